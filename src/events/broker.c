#include "events/broker.h"

#include <amqp_tcp_socket.h>
#include <sys/socket.h>

static int rmq_open(void *ctx, const char *host, int port, const struct timeval *connect_tv,
		    const struct timeval *call_tv, amqp_connection_state_t *conn, int *fd)
{
	amqp_socket_t *sock;

	(void)ctx;
	*fd = -1;
	*conn = amqp_new_connection();
	if (*conn == NULL || (sock = amqp_tcp_socket_new(*conn)) == NULL)
		return AMQP_STATUS_NO_MEMORY;
	amqp_set_handshake_timeout(*conn, call_tv);
	amqp_set_rpc_timeout(*conn, call_tv);
	if (amqp_socket_open_noblock(sock, host, port, connect_tv) != AMQP_STATUS_OK)
		return AMQP_STATUS_SOCKET_ERROR;
	*fd = amqp_socket_get_sockfd(sock);
	if (*fd >= 0)
		setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, call_tv, sizeof(*call_tv));
	return AMQP_STATUS_OK;
}

static amqp_rpc_reply_t rmq_login(void *ctx, amqp_connection_state_t conn, const char *vhost,
				  const char *user, const char *password)
{
	(void)ctx;
	return amqp_login(conn, vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN, user, password);
}

static amqp_rpc_reply_t rmq_channel_open(void *ctx, amqp_connection_state_t conn,
					 amqp_channel_t channel)
{
	(void)ctx;
	amqp_channel_open(conn, channel);
	return amqp_get_rpc_reply(conn);
}

static amqp_rpc_reply_t rmq_confirm_select(void *ctx, amqp_connection_state_t conn,
					   amqp_channel_t channel)
{
	(void)ctx;
	amqp_confirm_select(conn, channel);
	return amqp_get_rpc_reply(conn);
}

static amqp_rpc_reply_t rmq_queue_declare(void *ctx, amqp_connection_state_t conn,
					  amqp_channel_t channel, const char *queue)
{
	(void)ctx;
	amqp_queue_declare(conn, channel, amqp_cstring_bytes(queue), 0, 1, 0, 0, amqp_empty_table);
	return amqp_get_rpc_reply(conn);
}

static int rmq_publish(void *ctx, amqp_connection_state_t conn, amqp_channel_t channel,
		       const char *queue, const amqp_basic_properties_t *props, const char *body)
{
	(void)ctx;
	return amqp_basic_publish(conn, channel, amqp_empty_bytes, amqp_cstring_bytes(queue), 1, 0,
				  props, amqp_cstring_bytes(body));
}

static int rmq_wait_frame(void *ctx, amqp_connection_state_t conn, amqp_frame_t *frame,
			  struct timeval *tv)
{
	(void)ctx;
	amqp_maybe_release_buffers(conn);
	return amqp_simple_wait_frame_noblock(conn, frame, tv);
}

static amqp_rpc_reply_t rmq_read_message(void *ctx, amqp_connection_state_t conn,
					 amqp_channel_t channel, amqp_message_t *msg)
{
	(void)ctx;
	return amqp_read_message(conn, channel, msg, 0);
}

static void rmq_destroy_message(void *ctx, amqp_message_t *msg)
{
	(void)ctx;
	amqp_destroy_message(msg);
}

static void rmq_close(void *ctx, amqp_connection_state_t conn)
{
	(void)ctx;
	amqp_destroy_connection(conn);
}

const struct events_broker events_broker_rabbitmq = {
	.open = rmq_open,
	.login = rmq_login,
	.channel_open = rmq_channel_open,
	.confirm_select = rmq_confirm_select,
	.queue_declare = rmq_queue_declare,
	.publish = rmq_publish,
	.wait_frame = rmq_wait_frame,
	.read_message = rmq_read_message,
	.destroy_message = rmq_destroy_message,
	.close = rmq_close,
	.ctx = NULL,
};
