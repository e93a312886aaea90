FROM busybox
RUN --network=none echo offline
RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t true
