FROM busybox
RUN ["echo", "exec form"]
RUN [not json
ENTRYPOINT echo shell form
