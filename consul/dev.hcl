# Consul agent configuration for development: `make run` starts
#   consul agent -dev -config-file consul/dev.hcl -http-port ... -server-port ...
#     -serf-lan-port ... -serf-wan-port ... -dns-port ...
# when no agent answers at CONSUL_HTTP_ADDR, with the HTTP port of that
# address and the others picked free (scripts/run.sh), so two runs can live
# side by side. gRPC (Envoy's xDS) is off. Everything stays on loopback.
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"
log_level   = "WARN"
ui          = true
ports {
  grpc = -1
}
