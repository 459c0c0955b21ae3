# Consul agent configuration for development: `make run` starts
#   consul agent -dev -config-file consul/dev.hcl
# when no agent answers at CONSUL_HTTP_ADDR. Everything stays on loopback.
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"
log_level   = "WARN"
ui          = true
ports {
  grpc = -1
}
