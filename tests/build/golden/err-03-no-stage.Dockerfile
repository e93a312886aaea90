ARG A
RUN echo hi
FROM busybox
