#!/bin/sh
# Writes the compose secrets of deploy/docker-compose.yml into deploy/secrets/, each a
# random value (database and broker URLs built from the passwords made here). Existing
# files are kept, so running it again changes nothing; delete a file to make it anew.
# The directory is private to you; the files in it are readable by the containers' users.
set -eu
dir="$(dirname "$0")/secrets"
mkdir -p "$dir"
chmod 700 "$dir"

random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

write() {  # write NAME VALUE, unless NAME exists
    [ -e "$dir/$1" ] && return 0
    printf '%s\n' "$2" > "$dir/$1"
    chmod 644 "$dir/$1"
}

write postgres_password "$(random)"
write rabbitmq_password "$(random)"
write database_url \
    "postgresql+asyncpg://herald:$(cat "$dir/postgres_password")@postgresql:5432/herald"
write amqp_url "amqp://herald:$(cat "$dir/rabbitmq_password")@rabbitmq:5672/"
write rabbitmq.conf "$(printf 'default_user = herald\ndefault_pass = %s' \
    "$(cat "$dir/rabbitmq_password")")"
for name in sms_auth_token push_token unsubscribe_secret console_secret codec_token; do
    write "$name" "$(random)"
done
write payload_keys "k1:$(head -c 32 /dev/urandom | base64)"
write secrets_keys "k1:$(head -c 32 /dev/urandom | base64)"
echo "compose secrets in $dir"
