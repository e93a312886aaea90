FROM busybox
MAINTAINER someone <a@b.c>
LABEL a=b "c d"="e f"
LABEL old style value
EXPOSE 80 443/tcp 53/udp
VOLUME ["/data", "/logs"]
VOLUME /x /y
WORKDIR /app
USER nobody:nogroup
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-ec"]
ONBUILD RUN echo triggered
ENTRYPOINT ["/bin/sh", "-c"]
