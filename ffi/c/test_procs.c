/* Two processes in C: producer processes and a consumer process (the
 * producer and consumer programs of this directory, exec'd) share a queue.
 * The consumer checks that every message arrives exactly once, intact and
 * in order per producer. Every wait has a timeout; the queue is removed
 * even when the test fails. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "shmq.h"

#define PRODUCERS 2
#define COUNT "20000"

static char target[128];

static pid_t spawn(char *const argv[]) {
    pid_t pid = fork();
    if (pid == 0) {
        execv(argv[0], argv);
        perror(argv[0]);
        _exit(127);
    }
    return pid;
}

/* Exit status of pid, or -1 if it did not exit within ms (it is then killed). */
static int wait_for(pid_t pid, int ms) {
    for (int waited = 0;; waited++) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
        if (waited >= ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

int main(int argc, char **argv) {
    (void)argc;
    char dir[512];
    snprintf(dir, sizeof dir, "%s", argv[0]);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = '\0'; else snprintf(dir, sizeof dir, ".");
    char producer[600], consumer[600];
    snprintf(producer, sizeof producer, "%s/producer", dir);
    snprintf(consumer, sizeof consumer, "%s/consumer", dir);

    snprintf(target, sizeof target, "posix:shmq-ctest-procs-%ld", (long)getpid());
    shmq_queue *q = NULL;
    shmq_status s = shmq_queue_create(target, 128, 64, 0, 0, &q);
    if (s != SHMQ_OK) {
        fprintf(stderr, "create %s: %s: %s\n", target, shmq_status_name(s), shmq_last_error());
        return 1;
    }
    int failed = 0;
    char producers_arg[16];
    snprintf(producers_arg, sizeof producers_arg, "%d", PRODUCERS);
    /* The consumer's output goes to /dev/null: it checks everything itself. */
    pid_t c = fork();
    if (c == 0) {
        if (!freopen("/dev/null", "w", stdout)) _exit(126);
        execv(consumer, (char *[]){consumer, target, "--expect", producers_arg, COUNT, NULL});
        perror(consumer);
        _exit(127);
    }
    pid_t p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        char id[16];
        snprintf(id, sizeof id, "%d", i + 1);
        p[i] = spawn((char *[]){producer, target, id, COUNT, NULL});
    }
    for (int i = 0; i < PRODUCERS; i++) {
        int rc = wait_for(p[i], 60000);
        if (rc != 0) {
            fprintf(stderr, "producer %d failed (%d)\n", i + 1, rc);
            failed = 1;
        }
    }
    shmq_queue_close(q); /* the consumer drains, then sees SHMQ_CLOSED */
    int rc = wait_for(c, 60000);
    if (rc != 0) {
        fprintf(stderr, "consumer failed (%d)\n", rc);
        failed = 1;
    }
    shmq_stats st;
    if (shmq_queue_stats(q, &st) == SHMQ_OK && st.dequeued != (uint64_t)PRODUCERS * atoi(COUNT)) {
        fprintf(stderr, "stats: %llu dequeued\n", (unsigned long long)st.dequeued);
        failed = 1;
    }
    shmq_queue_unlink(q);
    shmq_queue_free(q);
    if (failed) return 1;
    printf("test_procs: %d C producer processes -> 1 C consumer process, %d x %s messages: ok\n", PRODUCERS,
           PRODUCERS, COUNT);
    return 0;
}
