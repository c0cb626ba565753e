/* libuv_echo.c - a real libuv event loop, measured with the span API.

   A TCP echo server on 127.0.0.1 (an ephemeral port) and CLIENTS clients
   in the same loop. Each client connects, then MESSAGES times: sends a
   MESSAGE_SIZE-byte message, waits for its echo, and waits THINK_MS on a
   timer before the next one; then it closes. The server stops listening
   after CLIENTS connections, so the loop ends by itself.

   Each connection, on both sides, is a state machine driven by libuv
   callbacks. It has a span, and every callback of it is one poll of that
   span. Each stage of the connection is a child span whose run lasts from
   the call that starts the stage (uv_write, uv_read_start, uv_timer_start,
   uv_close) to the callback that completes it, so the dump shows busy time
   (CPU in callbacks) and wall time (waiting) per stage:

       server;conn;accept  server;conn;read  server;conn;write  server;conn;close
       client;connect  client;send  client;recv  client;think  client;close

   A stage's first poll is the call that starts it and its last the
   callback that completes it, so most stages count 2 polls per run. The
   server's run is its listener's life, from listen to the last accept; the
   connections it accepted outlive it, so in the wall graph the server
   frame is as wide as its connections and has no self wall.

   Exact poll counts, with N = CLIENTS and M = MESSAGES (one read callback
   per 64-byte message, as loopback delivers it):
       server 1 + N        server;conn (2M + 3) N      server;conn;accept N
       server;conn;read (2M + 2) N   server;conn;write 2M N   server;conn;close 2N
       client (3M + 2) N   client;connect 2N   client;send 2M N
       client;recv 2M N    client;think 2(M - 1) N     client;close 2N

   With --silent-client, one more client connects and never sends: its
   connection waits in its read stage, and after HANG_MS the program stops
   the loop and exits with those runs still open, as a hung server would
   be found (docs/live.md, "What is stuck right now").

   Build (needs libuv: apt-get install libuv1-dev):
       make build/examples/libuv_echo && build/examples/libuv_echo */
#define DIAGNOSE_IMPLEMENTATION
#include "diagnose.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#ifndef CLIENTS /* -DCLIENTS=n etc. change the load (make bench does) */
#define CLIENTS 4
#endif
#ifndef MESSAGES
#define MESSAGES 5
#endif
#define MESSAGE_SIZE 64
#ifndef THINK_MS
#define THINK_MS 2
#endif
#define HANG_MS 1500 /* --silent-client: how long the loop waits for it */

static uv_loop_t *loop;
static uv_tcp_t server;
static diag_span server_span = DIAG_SPAN_INIT("server");
static int accepted, echoed, errors, expected = CLIENTS;

/* Stages are spans too: a stage's run starts in one callback and ends in a
   later one. This is its last poll when the completing callback does no
   work of the stage's own (the callback's work is the connection's). */
static void stage_done(diag_span *stage)
{
    diag_span_begin(stage);
    diag_span_end(stage, DIAG_READY);
}

static void check(int rc, const char *what)
{
    if (rc == 0) return;
    fprintf(stderr, "libuv_echo: %s: %s\n", what, uv_strerror(rc));
    errors++;
}

/* ======================= the server's side of a connection ======================= */

struct conn {
    uv_tcp_t tcp;
    uv_write_t write_req;
    char message[MESSAGE_SIZE];
    size_t have;
    diag_span span, accept, read, write, close;
};

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static void conn_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct conn *c = (struct conn *)handle->data;
    (void)suggested;
    *buf = uv_buf_init(c->message + c->have, (unsigned)(MESSAGE_SIZE - c->have));
}

static void conn_read_start(struct conn *c) /* the read stage begins */
{
    diag_span_begin(&c->read);
    c->have = 0;
    check(uv_read_start((uv_stream_t *)&c->tcp, conn_alloc, conn_on_read), "uv_read_start");
    diag_span_end(&c->read, DIAG_PENDING);
}

static void conn_on_closed(uv_handle_t *handle)
{
    struct conn *c = (struct conn *)handle->data;
    diag_span_begin(&c->span);
    stage_done(&c->close);
    diag_span_end(&c->span, DIAG_READY); /* the connection's run ends here */
    free(c);
}

static void conn_on_written(uv_write_t *req, int status)
{
    struct conn *c = (struct conn *)req->data;
    diag_span_begin(&c->span);
    stage_done(&c->write);
    check(status, "server write");
    conn_read_start(c); /* the next request */
    diag_span_end(&c->span, DIAG_PENDING);
}

static void conn_on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct conn *c = (struct conn *)stream->data;
    (void)buf;
    if (nread == 0) return; /* libuv's "nothing to read after all": no event, no poll */
    diag_span_begin(&c->span);
    diag_span_begin(&c->read);
    if (nread < 0) { /* the client closed (UV_EOF) or failed: the read stage ends, close */
        if (nread != UV_EOF) check((int)nread, "server read");
        diag_span_end(&c->read, DIAG_READY);
        diag_span_begin(&c->close);
        uv_close((uv_handle_t *)&c->tcp, conn_on_closed);
        diag_span_end(&c->close, DIAG_PENDING);
    } else if ((c->have += (size_t)nread) < MESSAGE_SIZE) {
        diag_span_end(&c->read, DIAG_PENDING); /* part of a message: keep reading */
    } else {
        uv_buf_t echo = uv_buf_init(c->message, MESSAGE_SIZE);
        check(uv_read_stop(stream), "uv_read_stop");
        diag_span_end(&c->read, DIAG_READY);
        diag_span_begin(&c->write);
        c->write_req.data = c;
        check(uv_write(&c->write_req, stream, &echo, 1, conn_on_written), "uv_write");
        diag_span_end(&c->write, DIAG_PENDING);
    }
    diag_span_end(&c->span, DIAG_PENDING);
}

static void server_on_connection(uv_stream_t *listener, int status)
{
    static const diag_span init[5] = { DIAG_SPAN_INIT("conn"), DIAG_SPAN_INIT("accept"), DIAG_SPAN_INIT("read"),
                                       DIAG_SPAN_INIT("write"), DIAG_SPAN_INIT("close") };
    struct conn *c = (struct conn *)calloc(1, sizeof *c);
    diag_span_begin(&server_span);
    check(status, "listen");
    if (c != NULL && status == 0) {
        c->span = init[0], c->accept = init[1], c->read = init[2], c->write = init[3], c->close = init[4];
        diag_span_begin(&c->span); /* a poll of the server: the connection's path is server;conn */
        diag_span_begin(&c->accept);
        check(uv_tcp_init(loop, &c->tcp), "uv_tcp_init");
        c->tcp.data = c;
        check(uv_accept(listener, (uv_stream_t *)&c->tcp), "uv_accept");
        diag_span_end(&c->accept, DIAG_READY);
        conn_read_start(c);
        diag_span_end(&c->span, DIAG_PENDING);
    }
    if (++accepted == expected) uv_close((uv_handle_t *)listener, NULL); /* serve no more */
    diag_span_end(&server_span, accepted == expected ? DIAG_READY : DIAG_PENDING);
}

/* ================================== a client ================================== */

struct client {
    int id, sent, write_done, echo_done;
    uv_tcp_t tcp;
    uv_connect_t connect_req;
    uv_write_t write_req;
    uv_timer_t think_timer;
    char out[MESSAGE_SIZE], in[MESSAGE_SIZE];
    size_t have;
    diag_span span, connect, send, recv, think, close;
};

static void client_send(struct client *cl);

static void client_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    struct client *cl = (struct client *)handle->data;
    (void)suggested;
    *buf = uv_buf_init(cl->in + cl->have, (unsigned)(MESSAGE_SIZE - cl->have));
}

static void client_on_closed(uv_handle_t *handle)
{
    struct client *cl = (struct client *)handle->data;
    diag_span_begin(&cl->span);
    stage_done(&cl->close);
    diag_span_end(&cl->span, DIAG_READY);
}

static void client_on_think(uv_timer_t *timer)
{
    struct client *cl = (struct client *)timer->data;
    diag_span_begin(&cl->span);
    stage_done(&cl->think);
    client_send(cl);
    diag_span_end(&cl->span, DIAG_PENDING);
}

/* After both the write and the echo of a message: think, or close. */
static void client_next(struct client *cl)
{
    if (!cl->write_done || !cl->echo_done) return;
    if (cl->sent < MESSAGES) {
        diag_span_begin(&cl->think);
        check(uv_timer_start(&cl->think_timer, client_on_think, THINK_MS, 0), "uv_timer_start");
        diag_span_end(&cl->think, DIAG_PENDING);
        return;
    }
    diag_span_begin(&cl->close);
    uv_close((uv_handle_t *)&cl->think_timer, NULL);
    uv_close((uv_handle_t *)&cl->tcp, client_on_closed);
    diag_span_end(&cl->close, DIAG_PENDING);
}

static void client_on_sent(uv_write_t *req, int status)
{
    struct client *cl = (struct client *)req->data;
    diag_span_begin(&cl->span);
    stage_done(&cl->send);
    check(status, "client write");
    cl->write_done = 1;
    client_next(cl);
    diag_span_end(&cl->span, DIAG_PENDING);
}

static void client_on_echo(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct client *cl = (struct client *)stream->data;
    (void)buf;
    if (nread == 0) return; /* no event, no poll */
    diag_span_begin(&cl->span);
    diag_span_begin(&cl->recv);
    if (nread < 0) {
        check((int)nread, "client read"); /* the server never closes first */
        diag_span_end(&cl->recv, DIAG_READY);
    } else if ((cl->have += (size_t)nread) < MESSAGE_SIZE) {
        diag_span_end(&cl->recv, DIAG_PENDING);
    } else {
        check(uv_read_stop(stream), "uv_read_stop");
        if (memcmp(cl->in, cl->out, MESSAGE_SIZE) == 0) echoed++;
        else check(UV_EPROTO, "echo differs from the message");
        cl->echo_done = 1;
        diag_span_end(&cl->recv, DIAG_READY);
        client_next(cl);
    }
    diag_span_end(&cl->span, DIAG_PENDING);
}

/* Starts two stages at once: send the message, and read its echo. */
static void client_send(struct client *cl)
{
    uv_buf_t buf = uv_buf_init(cl->out, MESSAGE_SIZE);
    memset(cl->out, '.', MESSAGE_SIZE);
    snprintf(cl->out, MESSAGE_SIZE, "client %d message %d", cl->id, ++cl->sent);
    cl->write_done = cl->echo_done = 0;
    cl->have = 0;
    diag_span_begin(&cl->send);
    cl->write_req.data = cl;
    check(uv_write(&cl->write_req, (uv_stream_t *)&cl->tcp, &buf, 1, client_on_sent), "uv_write");
    diag_span_end(&cl->send, DIAG_PENDING);
    diag_span_begin(&cl->recv);
    check(uv_read_start((uv_stream_t *)&cl->tcp, client_alloc, client_on_echo), "uv_read_start");
    diag_span_end(&cl->recv, DIAG_PENDING);
}

static void client_on_connected(uv_connect_t *req, int status)
{
    struct client *cl = (struct client *)req->data;
    diag_span_begin(&cl->span);
    stage_done(&cl->connect);
    check(status, "connect");
    if (status == 0 && cl->id >= 0) client_send(cl); /* the silent client (id -1) never sends */
    diag_span_end(&cl->span, DIAG_PENDING);
}

/* --silent-client: the loop would wait for it forever; stop it instead. */
static void on_hang(uv_timer_t *timer)
{
    (void)timer;
    fprintf(stderr, "libuv_echo: the silent client sent nothing in %d ms; stopping the loop\n", HANG_MS);
    uv_stop(loop);
}

static void client_start(struct client *cl, int id, const struct sockaddr_in *addr)
{
    static const diag_span init[6] = { DIAG_SPAN_INIT("client"), DIAG_SPAN_INIT("connect"), DIAG_SPAN_INIT("send"),
                                       DIAG_SPAN_INIT("recv"),   DIAG_SPAN_INIT("think"),   DIAG_SPAN_INIT("close") };
    cl->id = id;
    cl->span = init[0], cl->connect = init[1], cl->send = init[2];
    cl->recv = init[3], cl->think = init[4], cl->close = init[5];
    diag_span_begin(&cl->span);
    diag_span_begin(&cl->connect);
    check(uv_tcp_init(loop, &cl->tcp), "uv_tcp_init");
    check(uv_timer_init(loop, &cl->think_timer), "uv_timer_init");
    cl->tcp.data = cl->think_timer.data = cl->connect_req.data = cl;
    check(uv_tcp_connect(&cl->connect_req, &cl->tcp, (const struct sockaddr *)addr, client_on_connected),
          "uv_tcp_connect");
    diag_span_end(&cl->connect, DIAG_PENDING);
    diag_span_end(&cl->span, DIAG_PENDING);
}

int main(int argc, char **argv)
{
    static struct client clients[CLIENTS], silent;
    static uv_timer_t hang;
    struct sockaddr_in addr;
    int i, len = (int)sizeof addr, silent_client = argc > 1 && strcmp(argv[1], "--silent-client") == 0;
    uint64_t start;
    loop = uv_default_loop();
    start = uv_hrtime();

    diag_span_begin(&server_span); /* the server's first poll: bind and listen */
    check(uv_tcp_init(loop, &server), "uv_tcp_init");
    check(uv_ip4_addr("127.0.0.1", 0, &addr), "uv_ip4_addr");
    check(uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0), "uv_tcp_bind");
    check(uv_listen((uv_stream_t *)&server, CLIENTS, server_on_connection), "uv_listen");
    check(uv_tcp_getsockname(&server, (struct sockaddr *)&addr, &len), "uv_tcp_getsockname");
    diag_span_end(&server_span, DIAG_PENDING);
    if (errors) return 1;

    for (i = 0; i < CLIENTS; i++) client_start(&clients[i], i, &addr);
    if (silent_client) {
        expected++;
        client_start(&silent, -1, &addr);
        check(uv_timer_init(loop, &hang), "uv_timer_init");
        check(uv_timer_start(&hang, on_hang, HANG_MS, 0), "uv_timer_start");
    }
    uv_run(loop, UV_RUN_DEFAULT); /* returns when every handle is closed, or at uv_stop */
    if (!silent_client) check(uv_loop_close(loop), "uv_loop_close"); /* the silent client's handles stay open */
    printf("%d clients x %d messages: %d echoed over 127.0.0.1:%d in %.1f ms\n", CLIENTS, MESSAGES, echoed,
           ntohs(addr.sin_port), (double)(uv_hrtime() - start) / 1e6);
    return errors || echoed != CLIENTS * MESSAGES ? 1 : 0;
}
