#!/usr/bin/env bash
# Start a PostgreSQL server on 127.0.0.1 for the tests and print its MLflow tracking URI.
# Installs Debian's postgresql package when the server is missing.
set -euo pipefail

sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
if ! command -v pg_lsclusters > /dev/null; then
    $sudo_cmd apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q postgresql > /dev/null
fi

cluster=$(pg_lsclusters --no-header | head -n 1)
version=$(echo "$cluster" | awk '{print $1}')
name=$(echo "$cluster" | awk '{print $2}')
port=$(echo "$cluster" | awk '{print $3}')
if [ -z "$version" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    name=main
    port=5432
    $sudo_cmd pg_createcluster "$version" "$name" > /dev/null
fi
$sudo_cmd pg_ctlcluster "$version" "$name" start > /dev/null 2>&1 || true

run_psql() { $sudo_cmd su postgres -c "psql -p $port -v ON_ERROR_STOP=1 -q -c \"$1\"" > /dev/null; }
# Databases a stopped test run left behind belong to the role, so they go before it.
leftovers=$($sudo_cmd su postgres -c "psql -p $port -At -c \"SELECT d.datname FROM pg_database d JOIN pg_roles r ON d.datdba = r.oid WHERE r.rolname = 'aeclust_test'\"")
for database in $leftovers; do
    run_psql "DROP DATABASE IF EXISTS $database WITH (FORCE)"
done
run_psql "DROP ROLE IF EXISTS aeclust_test"
run_psql "CREATE ROLE aeclust_test LOGIN CREATEDB PASSWORD 'aeclust_test'"
run_psql "CREATE DATABASE aeclust_test OWNER aeclust_test"
# DROP DATABASE ... WITH (FORCE) at a test's end may have to stop an autovacuum worker.
run_psql "GRANT pg_signal_backend TO aeclust_test"
echo "postgresql://aeclust_test:aeclust_test@127.0.0.1:$port/aeclust_test"
