# Stand-in for the redis image (docker-compose.yml, REDIS_IMAGE) where no registry is reachable:
# Debian's redis-server and redis-cli on the locally made base, run as in the official image
# (the command's arguments, data in /data).
ARG BASE_IMAGE=colorize-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /data && chown redis:redis /data
USER redis
WORKDIR /data
CMD ["redis-server"]
