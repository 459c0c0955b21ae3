-- wrk script: POST /users with a new email every request (bench/postgres.sh).
-- The first script argument (after --) tags the emails of one wrk run, so
-- runs against the same database never repeat one: "<tag>-<thread>-<n>".
local tag = "run"
local threads = 0
local n = 0

function setup(thread)
	threads = threads + 1
	thread:set("tid", threads)
end

function init(args)
	tag = args[1] or tag
end

function request()
	n = n + 1
	local body = string.format('{"name":"Bench","email":"%s-%d-%d@example.com"}', tag, tid, n)
	return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end
