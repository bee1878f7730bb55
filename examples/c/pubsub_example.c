/* The README's pub/sub example, as a program: pubsub_example URL */
#include <stdio.h>

#include <redpat/redpat.h>

int main(int argc, char **argv)
{
    rp_client_options co = RP_CLIENT_OPTIONS_INIT;
    rp_client *publisher, *listener;
    rp_subscription *sub;
    rp_op *listen;
    rp_error err;
    const void *channels[] = { "news" };
    size_t lens[] = { 4 };
    int64_t receivers = 0;
    int got = 0;

    co.url = argc > 1 ? argv[1] : "redis://127.0.0.1:6379/0";
    /* a subscription keeps a connection to itself: give it a client of its own */
    if (rp_client_new(&publisher, &co, &err) != RP_OK ||
        rp_client_new(&listener, &co, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    if (rp_subscription_new(&sub, listener, 1, channels, lens, 0, NULL, NULL, &err) != RP_OK ||
        rp_subscription_listen_op(&listen, sub, &err) != RP_OK) {
        fprintf(stderr, "%s\n", err.message);
        return 1;
    }
    for (;;) {
        rp_pubsub_message m;
        int rc = rp_client_pump(listener, listen, 2000, NULL, &err); /* wait up to 2 s */
        if (rc != RP_OK) {
            fprintf(stderr, "pump: %s\n", rc == RP_ETIMEOUT ? "no message in 2 s" : err.message);
            break;
        }
        rp_subscription_message(listen, &m);
        if (m.kind == RP_PUBSUB_SUBSCRIBE) { /* subscribed: now a publish reaches us */
            rp_pubsub_publish(publisher, "news", 4, "hello", 5, &receivers, &err);
            printf("published to %lld subscriber(s)\n", (long long)receivers);
        } else if (m.kind == RP_PUBSUB_MESSAGE) {
            printf("%.*s: %.*s\n", (int)m.channel_len, m.channel, (int)m.data_len, m.data);
            got = 1;
            break;
        }
    }
    rp_op_free(listen);
    rp_subscription_free(sub);
    rp_client_free(listener);
    rp_client_free(publisher);
    return got && receivers == 1 ? 0 : 1;
}
