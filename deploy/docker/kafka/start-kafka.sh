#!/bin/sh
# Starts the broker. server.properties is written at each start: the listeners below, the
# bank's broker defaults, then one line per KAFKA_* variable but KAFKA_HEAP_OPTS, in the
# apache/kafka image's style (KAFKA_ADVERTISED_LISTENERS sets advertised.listeners); a later
# line wins. The storage is formatted on the first start.
# Two listeners: INTERNAL, which the broker also uses to reach itself (transactions do), and
# EXTERNAL, port 9092, for clients; advertise EXTERNAL as the address they reach it by.
set -eu
config=/var/lib/kafka/server.properties
data=/var/lib/kafka/data

{
    cat <<LISTENERS
controller.quorum.voters=1@127.0.0.1:9093
listeners=INTERNAL://:29092,EXTERNAL://:9092,CONTROLLER://127.0.0.1:9093
advertised.listeners=INTERNAL://localhost:29092,EXTERNAL://127.0.0.1:9092
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT
log.dirs=$data
LISTENERS
    # What every broker of the bank sets, the launcher's too (deploy/kafka/broker.properties).
    cat /opt/kafka/config/broker.properties
    # KAFKA_HEAP_OPTS is for the JVM, not the broker.
    env | grep '^KAFKA_' | grep -v '^KAFKA_HEAP_OPTS=' | while IFS='=' read -r name value; do
        printf '%s=%s\n' "$(echo "${name#KAFKA_}" | tr 'A-Z_' 'a-z.')" "$value"
    done
} > "$config"

classpath='/opt/kafka/libs/*'
# The health check reads this start's "Kafka Server started" line, not an earlier start's.
rm -f /var/lib/kafka/server.log
if [ ! -f "$data/meta.properties" ]; then
    # A random cluster id: 16 bytes in URL-safe base64 without padding, as Kafka expects.
    cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    java -cp "$classpath" kafka.tools.StorageTool format --ignore-formatted \
        --cluster-id="$cluster_id" -c "$config"
fi

# exec: the broker is PID 1 and gets SIGTERM directly, for a controlled shutdown.
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS holds several options
exec java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp "$classpath" kafka.Kafka "$config"
