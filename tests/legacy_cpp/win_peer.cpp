// A shmx 1.0.1 peer for the Windows tests (tests/test_windows.py builds it
// with x86_64-w64-mingw32-g++ against the 1.0.1 headers and runs it under
// wine from tests/c/test_win32.c).  Its regions are 1.0.1's: a named
// pagefile mapping under the bare region name.
//
// usage: win_peer server NAME N   create NAME (streams 1 "seq" u64, 2 "blob"
//                                 u8); publish frames 1..N, each only after
//                                 a control message (type 0x51) carrying its
//                                 seq came back; then destroy
//        win_peer client NAME N   open NAME, check its schema, read frames
//                                 until seq N, checking every byte, and
//                                 acknowledge each seq with a control
//                                 message (type 0x51)
// Exit status 0 on success; the reason on stderr otherwise.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "shmx_client.h"
#include "shmx_server.h"

static constexpr std::uint32_t kAck = 0x51;
static constexpr std::uint32_t kBlob = 64;

static std::vector<std::uint8_t> blob(std::uint64_t seq) {
    std::vector<std::uint8_t> b(kBlob);
    for (std::uint32_t i = 0; i < kBlob; i++) b[i] = static_cast<std::uint8_t>(seq * 3u + i);
    return b;
}

static bool expired(std::chrono::steady_clock::time_point since) {
    return std::chrono::steady_clock::now() - since > std::chrono::seconds(20);
}

static int run_server(const std::string& name, std::uint64_t n) {
    shmx::Server::Config cfg;
    cfg.name = name;
    cfg.slots = 4;
    cfg.reader_slots = 4;
    cfg.static_bytes_cap = 1024;
    cfg.frame_bytes_cap = 4096;
    cfg.control_per_reader = 256;
    shmx::StaticStream seq{1, shmx::DT_U64, 1, shmx::LAYOUT_SOA_SCALAR, 8, "seq", {}};
    shmx::StaticStream data{2, shmx::DT_U8, 1, shmx::LAYOUT_SOA_SCALAR, 1, "blob", {}};
    shmx::Server server;
    if (!server.create(cfg, {seq, data})) {
        std::fprintf(stderr, "create failed\n");
        return 1;
    }
    for (std::uint64_t k = 1; k <= n; k++) {
        auto fm = server.begin_frame();
        const auto b = blob(k);
        if (!shmx::Server::append_stream(fm, 1, &k, 1, 8) ||
            !shmx::Server::append_stream(fm, 2, b.data(), kBlob, kBlob) ||
            !server.publish_frame(fm, static_cast<double>(k))) {
            std::fprintf(stderr, "publish %llu failed\n", static_cast<unsigned long long>(k));
            return 1;
        }
        const auto start = std::chrono::steady_clock::now();
        bool acked = false;
        while (!acked) {
            std::vector<shmx::Server::ControlMsg> msgs;
            if (server.poll_control(msgs, 16)) {
                for (const auto& m : msgs) {
                    std::uint64_t v = 0;
                    if (m.type == kAck && m.data.size() == 8) std::memcpy(&v, m.data.data(), 8);
                    acked = acked || v == k;
                }
            }
            if (!acked) {
                if (expired(start)) {
                    std::fprintf(stderr, "no ack for %llu\n", static_cast<unsigned long long>(k));
                    return 1;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        }
    }
    server.destroy();
    return 0;
}

static int run_client(const std::string& name, std::uint64_t n) {
    shmx::Client client;
    const auto start = std::chrono::steady_clock::now();
    while (!client.open(name)) {
        if (expired(start)) {
            std::fprintf(stderr, "cannot open %s\n", name.c_str());
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    shmx::StaticState st;
    if (!client.refresh_static(st) || st.dir.size() != 2 || st.dir[0].name != "seq" ||
        st.dir[1].name != "blob") {
        std::fprintf(stderr, "unexpected schema\n");
        return 1;
    }
    std::uint64_t last = 0;
    while (last < n) {
        shmx::FrameView fv;
        shmx::DecodedFrame df;
        if (client.latest(fv) && shmx::Client::decode(fv, df) && df.streams.size() == 2) {
            std::uint64_t k = 0;
            std::memcpy(&k, df.streams[0].second.ptr, 8);
            if (k != last) {
                const auto b = blob(k);
                const auto& item = df.streams[1].second;
                if (k < last || item.bytes != kBlob || std::memcmp(item.ptr, b.data(), kBlob) != 0) {
                    std::fprintf(stderr, "frame %llu is wrong\n", static_cast<unsigned long long>(k));
                    return 1;
                }
                last = k;
                if (!client.control_send(kAck, &k, 8)) {
                    std::fprintf(stderr, "control_send failed\n");
                    return 1;
                }
                continue;
            }
        }
        if (expired(start)) {
            std::fprintf(stderr, "stopped at %llu\n", static_cast<unsigned long long>(last));
            return 1;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    client.close();
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s server|client NAME N\n", argv[0]);
        return 2;
    }
    const std::uint64_t n = std::strtoull(argv[3], nullptr, 10);
    if (std::string(argv[1]) == "server") return run_server(argv[2], n);
    if (std::string(argv[1]) == "client") return run_client(argv[2], n);
    return 2;
}
