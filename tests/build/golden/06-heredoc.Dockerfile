FROM busybox
RUN <<EOF
echo hello
echo world
EOF
RUN <<-"END" sh
	echo $HOME
	END
RUN echo after
