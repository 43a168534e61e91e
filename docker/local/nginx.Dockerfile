# Stand-in for the nginx image (docker-compose.yml, NGINX_IMAGE): Debian's nginx, and wget for
# the health check, on the locally made base; it reads /etc/nginx/nginx.conf like the official one.
ARG BASE_IMAGE=colorize-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/*
CMD ["nginx", "-g", "daemon off;"]
