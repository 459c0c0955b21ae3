# A dev agent with ACLs on and everything denied by default, for trying (and
# testing) meshnode with tokens:
#   consul agent -dev -config-file consul/acl-dev.hcl
# The master token below is for local development only.
bind_addr   = "127.0.0.1"
client_addr = "127.0.0.1"
log_level   = "WARN"
acl {
  enabled                  = true
  default_policy           = "deny"
  enable_token_persistence = false
  tokens {
    master = "meshnode-dev-master-token"
    agent  = "meshnode-dev-master-token"
  }
}
