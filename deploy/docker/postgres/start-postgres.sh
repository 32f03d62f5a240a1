#!/bin/sh
# The first start makes the cluster: POSTGRES_USER (default postgres) with POSTGRES_PASSWORD,
# creates POSTGRES_DB, then runs /docker-entrypoint-initdb.d/*.sql in it, on a server that only
# listens on its socket, so no client sees a half-made cluster. Then it serves on every
# interface, passwords required over TCP.
set -eu
user=${POSTGRES_USER:-postgres}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    password_file=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:?Set POSTGRES_PASSWORD: the password of POSTGRES_USER}" \
        > "$password_file"
    initdb --username="$user" --pwfile="$password_file" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >/dev/null
    rm -f "$password_file"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"

    pg_ctl --wait --silent --options="-c listen_addresses=''" start
    if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
        createdb --username="$user" "$POSTGRES_DB"
    fi
    for script in /docker-entrypoint-initdb.d/*.sql; do
        [ -e "$script" ] || continue
        echo "Running $script"
        psql --quiet -v ON_ERROR_STOP=1 --username="$user" --dbname="${POSTGRES_DB:-postgres}" \
            --file="$script"
    done
    pg_ctl --wait --silent --mode=fast stop
fi

# exec: the server is PID 1 and gets SIGTERM directly, for a clean stop.
exec postgres
