/* One ttRPC call from inside a container (tests/test_guest_sockets_runc.py): connect to the unix socket
 * argv[1], send the frame read from stdin (the test builds it with agent/ttrpc.py), copy the one frame that
 * comes back (10-byte header: u32 big-endian length, u32 stream id, u8 type, u8 flags; then the data) to
 * stdout. Built static, so a busybox layer can run it. Exit status: 0 answered, 2 usage, 3 connect,
 * 4 send, 5 receive. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char buf[1 << 20];

static int whole(int fd, char *p, size_t n, int reading) {
    while (n > 0) {
        ssize_t got = reading ? read(fd, p, n) : write(fd, p, n);
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int main(int argc, char **argv) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    size_t len = 0;
    ssize_t got;
    if (argc != 2 || strlen(argv[1]) >= sizeof addr.sun_path) return 2;
    while (len < sizeof buf && (got = read(0, buf + len, sizeof buf - len)) > 0) len += (size_t)got;
    strcpy(addr.sun_path, argv[1]);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&addr, sizeof addr) != 0) {
        perror("connect");
        return 3;
    }
    if (whole(s, buf, len, 0) != 0) return 4;
    if (whole(s, buf, 10, 1) != 0) return 5;
    uint32_t size = ((uint32_t)(unsigned char)buf[0] << 24) | ((uint32_t)(unsigned char)buf[1] << 16) |
                    ((uint32_t)(unsigned char)buf[2] << 8) | (uint32_t)(unsigned char)buf[3];
    if (size > sizeof buf - 10 || whole(s, buf + 10, size, 1) != 0) return 5;
    return whole(1, buf, 10 + size, 0) == 0 ? 0 : 5;
}
