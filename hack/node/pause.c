/* The pod sandbox's process (what registry.k8s.io/pause is): holds the pod's namespaces
 * open, reaps nothing, and exits on SIGTERM or SIGINT. Built with gcc -static by
 * hack/node.sh into the image containerd's CRI starts for every pod. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

int main(void) {
    signal(SIGTERM, stop);
    signal(SIGINT, stop);
    for (;;) pause();
}
