# producer.jl - publish demo-schema frames from Julia through libshmx.
#
#   LD_LIBRARY_PATH=$PREFIX/lib julia producer.jl --name demo --frames 500 --rate 100 --wait-readers 1
#
# Frame k: seq = k (UInt64), pixels[i] = (k + i) % 251 (UInt8, written in
# place in shared memory), stamp = k / 1000 (Float64, also sim_time) - the
# schema of examples/c/README.md, so the C, Go and Python consumers check it.
include(joinpath(@__DIR__, "shmx.jl"))

function parse_args(args)
    opts = Dict("name" => "shmx-c-demo", "frames" => "100", "bytes" => "4096", "rate" => "100",
                "wait-readers" => "0", "linger-ms" => "5000")
    i = 1
    while i <= length(args)
        key = replace(args[i], r"^--" => "")
        haskey(opts, key) && i < length(args) || error("usage: producer.jl [--$(join(keys(opts), " --"))]")
        opts[key] = args[i + 1]
        i += 2
    end
    return opts
end

function main(args)
    opts = parse_args(args)
    name = opts["name"]
    frames = parse(UInt64, opts["frames"])
    nbytes = parse(Int, opts["bytes"])
    rate = parse(Float64, opts["rate"])
    wait_readers = parse(Int, opts["wait-readers"])
    linger_ns = parse(Int, opts["linger-ms"]) * 1_000_000

    # The schema: names must stay alive (GC.@preserve) while C reads them.
    names = ["seq", "pixels", "stamp"]
    specs = [StreamSpec(1, SHMX_DT_U64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, pointer(names[1]), C_NULL, 0),
             StreamSpec(2, SHMX_DT_U8, 1, SHMX_LAYOUT_SOA_SCALAR, 1, pointer(names[2]), C_NULL, 0),
             StreamSpec(3, SHMX_DT_F64, 1, SHMX_LAYOUT_SOA_SCALAR, 8, pointer(names[3]), C_NULL, 0)]
    cfg = server_config()            # defaults + struct_size
    cfg.slots = 4
    cfg.frame_bytes_cap = nbytes + 16
    s = GC.@preserve names specs begin
        cfg.streams = pointer(specs)
        cfg.stream_count = length(specs)
        server_create(name, cfg)
    end
    println("producer (Julia): region '$name', libshmx $(shmx_version()), $frames frames of $nbytes bytes")

    buf = Vector{UInt8}(undef, 256)
    function drain()
        while (m = next_control(s, buf)) !== nothing
            reader_id, type, body = m
            println("producer: control from reader $(string(reader_id, base=16)): type 0x$(string(type, base=16)) '$(String(copy(body)))'")
        end
    end

    published = 0
    try
        deadline = time_ns() + 10_000_000_000
        while header_info(s).readers_connected < wait_readers
            time_ns() < deadline || error("no $wait_readers readers after 10 s")
            sleep(0.001)
        end
        period = rate > 0 ? 1.0 / rate : 0.0
        k = UInt64(1)
        while k <= frames
            frame = begin_frame(s)
            if frame === nothing       # every slot pinned by readers
                sleep(0.001)
                continue
            end
            px = loan(s, frame, 2, nbytes, 1)   # a view of the slot: zero copy
            @inbounds for i in 0:nbytes-1
                px[i + 1] = UInt8((k + i) % 251)
            end
            append_value(s, frame, 1, k)
            append_value(s, frame, 3, k / 1000.0)
            publish(s, frame, k / 1000.0)
            published = k
            k += 1
            drain()
            period > 0 && sleep(period)
        end
        deadline = time_ns() + linger_ns
        while time_ns() < deadline && header_info(s).readers_connected > 0
            drain()
            sleep(0.005)
        end
        drain()
    finally
        server_destroy(s)      # also on Ctrl-C: the region is removed
    end
    println("producer: published $published frames")
end

Base.exit_on_sigint(false)
main(ARGS)
