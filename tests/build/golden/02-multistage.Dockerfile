FROM busybox AS build
RUN echo built > /out
FROM scratch
COPY --from=build /out /out
CMD ["/out"]
