FROM busybox
COPY --chown=1000:1000 --chmod=0644 a.txt b* /dst/
ADD --chown=user:group archive.tar /opt/
COPY ["with space.txt", "/dst dir/"]
