/* The seam between the events publisher and rabbitmq-c: the calls the
 * publisher makes on a broker connection, as a table of function
 * pointers. Production uses events_broker_rabbitmq, which calls
 * rabbitmq-c; unit tests pass a fake broker that confirms, refuses,
 * returns or drops what the publisher sends. The publisher reads the
 * replies (amqp_rpc_reply_t, frames, messages) as rabbitmq-c gives them.
 * Only the publisher and this seam include amqp.h. */
#ifndef MESHNODE_EVENTS_BROKER_H
#define MESHNODE_EVENTS_BROKER_H

#include <amqp.h>
#include <sys/time.h>

struct events_broker {
	/* A new connection to host:port: the TCP connect within
	 * 'connect_tv', the AMQP handshake and every RPC within 'call_tv',
	 * which is also the socket's send timeout. *conn is what close()
	 * must free (NULL when nothing), *fd the socket (-1 when none).
	 * AMQP_STATUS_OK; AMQP_STATUS_NO_MEMORY; any other status: not
	 * connected. */
	int (*open)(void *ctx, const char *host, int port, const struct timeval *connect_tv,
		    const struct timeval *call_tv, amqp_connection_state_t *conn, int *fd);
	/* amqp_login(): PLAIN, no channel limit, frames of 128 KiB, no
	 * heartbeat. */
	amqp_rpc_reply_t (*login)(void *ctx, amqp_connection_state_t conn, const char *vhost,
				  const char *user, const char *password);
	/* channel.open, confirm.select, queue.declare (durable, not
	 * exclusive, not auto-delete): each its RPC's reply. */
	amqp_rpc_reply_t (*channel_open)(void *ctx, amqp_connection_state_t conn,
					 amqp_channel_t channel);
	amqp_rpc_reply_t (*confirm_select)(void *ctx, amqp_connection_state_t conn,
					   amqp_channel_t channel);
	amqp_rpc_reply_t (*queue_declare)(void *ctx, amqp_connection_state_t conn,
					  amqp_channel_t channel, const char *queue);
	/* basic.publish to the default exchange with routing key 'queue',
	 * mandatory: amqp_basic_publish()'s status. */
	int (*publish)(void *ctx, amqp_connection_state_t conn, amqp_channel_t channel,
		       const char *queue, const amqp_basic_properties_t *props, const char *body);
	/* The next frame within 'tv' (the buffers of the frames before it
	 * released): amqp_simple_wait_frame_noblock()'s status. */
	int (*wait_frame)(void *ctx, amqp_connection_state_t conn, amqp_frame_t *frame,
			  struct timeval *tv);
	/* The content of a basic.return just received (free it with
	 * destroy_message() when the reply is normal). */
	amqp_rpc_reply_t (*read_message)(void *ctx, amqp_connection_state_t conn,
					 amqp_channel_t channel, amqp_message_t *msg);
	void (*destroy_message)(void *ctx, amqp_message_t *msg);
	/* Frees the connection (no clean close: the broker may be gone). */
	void (*close)(void *ctx, amqp_connection_state_t conn);
	void *ctx;
};

/* rabbitmq-c over TCP. */
extern const struct events_broker events_broker_rabbitmq;

#endif
