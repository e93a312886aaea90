FROM busybox
ENV A=1 B="two words" C=three\ words
ENV OLD value with spaces
