/*
 * test_stress_reclaim.c - exactly one reclaimer wins.
 *
 * Each round leaves a region whose owner died (a child creates it and exits
 * without destroying it), then eight processes race to create the same
 * name.  Exactly one must win; every loser's message must name the live
 * winner's pid (not the dead owner's).  The winner keeps the region until
 * the parent has heard from all of them.  Also checked each round:
 * shmx_unlink refuses while the winner lives.
 *
 * SHMX_TEST_ROUNDS sets the number of rounds (default 1000).
 */
#include "shmx_test.h"

#include <signal.h>
#include <sys/wait.h>

#define RACERS 8

typedef struct report {
    int won;
    long pid;
    char msg[240];
} report;

static shmx_server_config cfg_for(void)
{
    shmx_server_config cfg;
    shmx_server_config_init(&cfg);
    cfg.slots = 2;
    cfg.reader_slots = 2;
    cfg.frame_bytes_cap = 64;
    cfg.control_per_reader = 0;
    return cfg;
}

static void racer(const char *name, int wfd, int go_fd, int done_fd)
{
    char c;
    if (read(go_fd, &c, 1) != 1) _exit(5);
    shmx_server_config cfg = cfg_for();
    shmx_server *s = NULL;
    report rep;
    memset(&rep, 0, sizeof rep);
    rep.pid = (long)getpid();
    shmx_status st = shmx_server_create(name, &cfg, &s);
    rep.won = st == SHMX_OK;
    snprintf(rep.msg, sizeof rep.msg, "%s", rep.won ? "" : shmx_last_error());
    if (write(wfd, &rep, sizeof rep) != (ssize_t)sizeof rep) _exit(6);
    if (rep.won) {
        /* Alive until every loser has reported. */
        if (read(done_fd, &c, 1) < 0) _exit(7); /* EOF: the parent closed it */
        shmx_server_destroy(s);
    }
    _exit(0);
}

int main(void)
{
    int rounds = 1000;
    const char *env = getenv("SHMX_TEST_ROUNDS");
    if (env && atoi(env) > 0) rounds = atoi(env);
    char name[128];
    t_name(name, sizeof name, "reclaim");
    int two_winners = 0, no_winner = 0, bad_msgs = 0;
    for (int round = 0; round < rounds; round++) {
        /* A dead owner's region. */
        pid_t owner = fork();
        REQUIRE(owner >= 0);
        if (owner == 0) {
            shmx_server_config cfg = cfg_for();
            shmx_server *s = NULL;
            _exit(shmx_server_create(name, &cfg, &s) == SHMX_OK ? 0 : 1);
        }
        int status = 0;
        REQUIRE(waitpid(owner, &status, 0) == owner && WIFEXITED(status) && WEXITSTATUS(status) == 0);

        int rep_pipe[2], go_pipe[2], done_pipe[2];
        REQUIRE(pipe(rep_pipe) == 0 && pipe(go_pipe) == 0 && pipe(done_pipe) == 0);
        pid_t kids[RACERS];
        for (int k = 0; k < RACERS; k++) {
            kids[k] = fork();
            REQUIRE(kids[k] >= 0);
            if (kids[k] == 0) {
                close(rep_pipe[0]);
                close(go_pipe[1]);
                close(done_pipe[1]);
                racer(name, rep_pipe[1], go_pipe[0], done_pipe[0]);
            }
        }
        close(rep_pipe[1]);
        close(go_pipe[0]);
        close(done_pipe[0]);
        /* Start them together. */
        char go[RACERS];
        memset(go, 'g', sizeof go);
        REQUIRE(write(go_pipe[1], go, sizeof go) == (ssize_t)sizeof go);
        report reps[RACERS];
        int winners = 0;
        long winner_pid = 0;
        for (int k = 0; k < RACERS; k++) {
            REQUIRE(read(rep_pipe[0], &reps[k], sizeof reps[k]) == (ssize_t)sizeof reps[k]);
            if (reps[k].won) {
                winners++;
                winner_pid = reps[k].pid;
            }
        }
        if (winners > 1) two_winners++;
        if (winners == 0) no_winner++;
        if (winners == 1) {
            char want[64];
            snprintf(want, sizeof want, "pid %ld)", winner_pid);
            for (int k = 0; k < RACERS; k++) {
                if (reps[k].won) continue;
                if (!strstr(reps[k].msg, want)) {
                    if (bad_msgs < 5) fprintf(stderr, "round %d: loser says '%s', winner is %ld\n", round, reps[k].msg, winner_pid);
                    bad_msgs++;
                }
            }
            /* The name belongs to a live server: rm must refuse. */
            CHECK_ST(shmx_unlink(name, NULL, 0), SHMX_EEXIST);
        }
        close(done_pipe[1]); /* the winner may go */
        close(rep_pipe[0]);
        close(go_pipe[1]);
        for (int k = 0; k < RACERS; k++) {
            REQUIRE(waitpid(kids[k], &status, 0) == kids[k]);
            CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
        (void)shmx_unlink(name, NULL, 1);
    }
    CHECK(two_winners == 0);
    CHECK(no_winner == 0);
    CHECK(bad_msgs == 0);
    printf("%d rounds of %d creators: %d with two winners, %d with none, %d loser messages not naming the winner\n",
           rounds, RACERS, two_winners, no_winner, bad_msgs);
    return t_finish("test_stress_reclaim");
}
