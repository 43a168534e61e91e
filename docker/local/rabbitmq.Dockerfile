# Stand-in for the rabbitmq image (docker-compose.yml, RABBITMQ_IMAGE): Debian's rabbitmq-server
# on the locally made base. Like the official image it creates the user named by
# RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS, keeps its data in /var/lib/rabbitmq and answers
# rabbitmq-diagnostics ping.
ARG BASE_IMAGE=colorize-local/debian:bookworm
FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/*
ENV RABBITMQ_CONFIG_FILE=/var/lib/rabbitmq/rabbitmq.conf \
    RABBITMQ_LOGS=- \
    HOME=/var/lib/rabbitmq
USER rabbitmq
WORKDIR /var/lib/rabbitmq
CMD ["sh", "-c", "printf 'default_user = %s\\ndefault_pass = %s\\n' \"${RABBITMQ_DEFAULT_USER:-guest}\" \"${RABBITMQ_DEFAULT_PASS:-guest}\" > \"$RABBITMQ_CONFIG_FILE\" && exec /usr/lib/rabbitmq/bin/rabbitmq-server"]
