// A shmx 1.0.1 producer written against its C++ header library, for
// tests/test_legacy.py: it reaches Server::write_static_append, which the
// 1.0.1 Python module does not bind.  Built by the test with
//   c++ -std=c++17 -I .peers/shmx101/include static_append.cpp
//
// usage: static_append NAME
// Creates region NAME with one stream (id 1 "base", uint8), prints
// "created", then executes one command per stdin line, answering "ok" or
// "fail" to each:
//   append HEX                          write_static_append(bytes)
//   frame SIM_TIME SID COUNT HEX ...    one frame of (SID, COUNT, HEX) triples
//   quit                                destroy and exit (the file stays)
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "shmx_server.h"

static std::vector<std::uint8_t> from_hex(const std::string& hex) {
    std::vector<std::uint8_t> out;
    if (hex == "-") return out;  // an empty byte string
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2)
        out.push_back(static_cast<std::uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
    return out;
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s NAME\n", argv[0]);
        return 2;
    }
    shmx::Server::Config cfg;
    cfg.name               = argv[1];
    cfg.slots              = 3;
    cfg.reader_slots       = 4;
    cfg.static_bytes_cap   = 1024;
    cfg.frame_bytes_cap    = 4096;
    cfg.control_per_reader = 256;
    shmx::StaticStream base{1, shmx::DT_U8, 1, shmx::LAYOUT_SOA_SCALAR, 1, "base", {}};
    shmx::Server server;
    if (!server.create(cfg, {base})) {
        std::printf("fail create\n");
        return 1;
    }
    std::printf("created\n");
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string cmd;
        in >> cmd;
        bool ok = false;
        if (cmd == "quit") {
            server.destroy();
            std::printf("ok\n");
            return 0;
        } else if (cmd == "append") {
            std::string hex;
            in >> hex;
            const auto bytes = from_hex(hex);
            ok = server.write_static_append(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
        } else if (cmd == "frame") {
            double sim_time = 0.0;
            in >> sim_time;
            auto fm = server.begin_frame();
            ok = true;
            std::uint32_t sid = 0, count = 0;
            std::string hex;
            while (in >> sid >> count >> hex) {
                const auto bytes = from_hex(hex);
                ok = ok && shmx::Server::append_stream(fm, sid, bytes.data(), count,
                                                       static_cast<std::uint32_t>(bytes.size()));
            }
            ok = ok && server.publish_frame(fm, sim_time);
        }
        std::printf("%s\n", ok ? "ok" : "fail");
        std::fflush(stdout);
    }
    server.destroy();
    return 0;
}
