-- wrk script: POST /orders for user 1 (make bench creates that user)
wrk.method = "POST"
wrk.body = '{"user_id":1,"product":"book","quantity":1}'
wrk.headers["Content-Type"] = "application/json"
