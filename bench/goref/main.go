// The reference design's service in Go, for `make bench` only: the users
// service of the Go microservices article meshnode grew from (net/http and
// the standard library, users in an in-memory map), and its orders call,
// which asks Consul's health endpoint for a passing users instance on every
// order and then calls that instance, as the article does. It registers
// itself with the local Consul agent the way the article does (an HTTP check
// on /health, every 10 s, the interval meshnode ships with) and deregisters
// on SIGTERM.
//
// Environment: PORT (required), SERVICE_NAME (users), USERS_SERVICE (the
// name POST /orders looks up; users), CONSUL_HTTP_ADDR (127.0.0.1:8500;
// empty or "none": no registration, and POST /orders answers 503).
//
// One deliberate departure: the client's transport keeps up to 256 idle
// connections per host instead of net/http's 2, so the order path reuses
// connections to Consul and to the users instance under load (with 2 it
// opens and closes one per call and runs out of loopback ports). It can
// only make the reference faster.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type user struct {
	ID    int64  `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
}

type order struct {
	ID       int64  `json:"id"`
	UserID   int64  `json:"user_id"`
	Product  string `json:"product"`
	Quantity int64  `json:"quantity"`
}

type store struct {
	mu      sync.RWMutex
	users   map[int64]user
	emails  map[string]int64
	orders  map[int64]order
	nextUID int64
	nextOID int64
}

var (
	db = store{users: map[int64]user{}, emails: map[string]int64{}, orders: map[int64]order{}}

	client = &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 256,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	consulAddr   string
	usersService string
)

func writeJSON(w http.ResponseWriter, code int, v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	w.Write(b)
}

func fail(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// readBody reads at most 1 MiB, as meshnode's server.max_body_bytes.
func readBody(w http.ResponseWriter, r *http.Request, v interface{}) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err == nil {
		err = json.Unmarshal(body, v)
	}
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return false
	}
	return true
}

func usersCollection(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		db.mu.RLock()
		list := make([]user, 0, len(db.users))
		for _, u := range db.users {
			list = append(list, u)
		}
		db.mu.RUnlock()
		writeJSON(w, http.StatusOK, list)
	case http.MethodPost:
		var in user
		if !readBody(w, r, &in) {
			return
		}
		if in.Name == "" || !strings.Contains(in.Email, "@") {
			fail(w, http.StatusBadRequest, "name and an email address are required")
			return
		}
		db.mu.Lock()
		if _, taken := db.emails[in.Email]; taken {
			db.mu.Unlock()
			fail(w, http.StatusConflict, "email is already taken")
			return
		}
		db.nextUID++
		in.ID = db.nextUID
		db.users[in.ID] = in
		db.emails[in.Email] = in.ID
		db.mu.Unlock()
		w.Header().Set("Location", fmt.Sprintf("/users/%d", in.ID))
		writeJSON(w, http.StatusCreated, in)
	default:
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
	}
}

func userByID(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(strings.TrimPrefix(r.URL.Path, "/users/"), 10, 64)
	if err != nil || id <= 0 {
		fail(w, http.StatusBadRequest, "invalid user id")
		return
	}
	if r.Method != http.MethodGet {
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	db.mu.RLock()
	u, ok := db.users[id]
	db.mu.RUnlock()
	if !ok {
		fail(w, http.StatusNotFound, "user not found")
		return
	}
	writeJSON(w, http.StatusOK, u)
}

type healthEntry struct {
	Node struct {
		Address string
	}
	Service struct {
		Address string
		Port    int
	}
}

// usersInstance asks Consul for the passing instances of usersService and
// picks one at random.
func usersInstance() (string, error) {
	resp, err := client.Get(fmt.Sprintf("http://%s/v1/health/service/%s?passing=1", consulAddr, usersService))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var entries []healthEntry
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		return "", err
	}
	if len(entries) == 0 {
		return "", fmt.Errorf("no passing %s instance", usersService)
	}
	e := entries[rand.Intn(len(entries))]
	addr := e.Service.Address
	if addr == "" {
		addr = e.Node.Address
	}
	return fmt.Sprintf("%s:%d", addr, e.Service.Port), nil
}

func orders(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fail(w, http.StatusMethodNotAllowed, "method not allowed")
		return
	}
	var in order
	if !readBody(w, r, &in) {
		return
	}
	if in.UserID <= 0 || in.Product == "" || in.Quantity <= 0 {
		fail(w, http.StatusBadRequest, "user_id, product and quantity are required")
		return
	}
	if consulAddr == "" {
		fail(w, http.StatusServiceUnavailable, "no Consul agent")
		return
	}
	addr, err := usersInstance()
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	resp, err := client.Get(fmt.Sprintf("http://%s/users/%d", addr, in.UserID))
	if err != nil {
		fail(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		fail(w, http.StatusUnprocessableEntity, "unknown user")
		return
	case resp.StatusCode != http.StatusOK:
		fail(w, http.StatusServiceUnavailable, "users answered "+resp.Status)
		return
	}
	db.mu.Lock()
	db.nextOID++
	in.ID = db.nextOID
	db.orders[in.ID] = in
	db.mu.Unlock()
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", in.ID))
	writeJSON(w, http.StatusCreated, in)
}

func health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func consulPut(path string, body []byte) error {
	req, err := http.NewRequest(http.MethodPut, "http://"+consulAddr+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", path, resp.Status)
	}
	return nil
}

func main() {
	port, err := strconv.Atoi(os.Getenv("PORT"))
	if err != nil || port <= 0 || port > 65535 {
		log.Fatal("PORT must be a port number")
	}
	name := os.Getenv("SERVICE_NAME")
	if name == "" {
		name = "users"
	}
	usersService = os.Getenv("USERS_SERVICE")
	if usersService == "" {
		usersService = "users"
	}
	consulAddr = os.Getenv("CONSUL_HTTP_ADDR")
	if consulAddr == "" {
		consulAddr = "127.0.0.1:8500"
	} else if consulAddr == "none" {
		consulAddr = ""
	}
	consulAddr = strings.TrimPrefix(consulAddr, "http://")

	mux := http.NewServeMux()
	mux.HandleFunc("/users", usersCollection)
	mux.HandleFunc("/users/", userByID)
	mux.HandleFunc("/orders", orders)
	mux.HandleFunc("/health", health)
	srv := &http.Server{Handler: mux}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		log.Fatal(err)
	}

	id := fmt.Sprintf("%s-%d", name, port)
	if consulAddr != "" {
		reg, _ := json.Marshal(map[string]interface{}{
			"ID": id, "Name": name, "Address": "127.0.0.1", "Port": port,
			"Check": map[string]string{
				"HTTP":     fmt.Sprintf("http://127.0.0.1:%d/health", port),
				"Interval": "10s", "Timeout": "2s",
			},
		})
		if err := consulPut("/v1/agent/service/register", reg); err != nil {
			log.Fatal("registering with Consul: ", err)
		}
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		if consulAddr != "" {
			consulPut("/v1/agent/service/deregister/"+id, nil)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
