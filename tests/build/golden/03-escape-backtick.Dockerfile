# escape=`
FROM busybox
RUN echo a `
    b
COPY c:\dir\file /dst/
