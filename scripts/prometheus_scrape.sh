#!/usr/bin/env bash
# Manual check (not run by CI): a real Prometheus (Debian `prometheus`) scrapes the
# /metrics of the leaky_service example served by leakscope's HTTP server, and its query
# API returns our series. Usage: scripts/prometheus_scrape.sh  (needs `prometheus`, `curl`)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${PORT:-16060}
PROM_PORT=${PROM_PORT:-19090}
work=$(mktemp -d)
trap 'kill $app $prom 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: leakscope
    static_configs:
      - targets: ["127.0.0.1:$PORT"]
YML
cargo build --release --example leaky_service
LEAKSCOPE=1 LEAKSCOPE_HTTP=127.0.0.1:$PORT LEAKSCOPE_LEAK_WINDOW=20s LEAKSCOPE_DIR="$work/out" \
    target/release/examples/leaky_service > "$work/app.log" 2>&1 &
app=$!
prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address=127.0.0.1:$PROM_PORT > "$work/prom.log" 2>&1 &
prom=$!
for _ in $(seq 1 30); do
    sleep 1
    out=$(curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query?query=leakscope_heap_live_bytes" || true)
    if echo "$out" | grep -q '"result":\[{'; then
        echo "$out"
        curl -s "http://127.0.0.1:$PROM_PORT/api/v1/targets" | grep -o '"health":"[a-z]*"' | head -1
        curl -s "http://127.0.0.1:$PROM_PORT/api/v1/query?query=leakscope_alerts_total" | grep -o '"kind":"[a-z_]*"' | sort -u
        echo "OK: Prometheus scraped leakscope's /metrics"
        exit 0
    fi
done
echo "FAILED: no leakscope_heap_live_bytes series in Prometheus"; tail -5 "$work/prom.log"; exit 1
