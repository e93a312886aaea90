FROM busybox
RUN echo hi
CMD ["sh"]
