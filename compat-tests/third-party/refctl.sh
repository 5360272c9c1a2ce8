#!/usr/bin/env bash
# rabbitmqctl stand-in for amqp091-go's RABBITMQ_RABBITMQCTL_PATH: targets the reference node on $REFCTL_PORT
exec /work/shared/bin/rabbitmq-ref ctl "${REFCTL_PORT:?}" "$@"
