# consumer.jl - read demo-schema frames from Julia through libshmx, zero copy,
# checking every byte.
#
#   LD_LIBRARY_PATH=$PREFIX/lib julia consumer.jl --name demo --frames 500 --send-control 3
#
# Reads frames in order (shmx_client_next, sleeping in shmx_client_wait)
# until frame number --frames, until the producer is gone, or until
# --timeout-ms passes without a new frame.  Exit status 0 only if every
# byte of every frame was right.
include(joinpath(@__DIR__, "shmx.jl"))

function parse_args(args)
    opts = Dict("name" => "shmx-c-demo", "frames" => "0", "timeout-ms" => "5000", "send-control" => "0")
    i = 1
    while i <= length(args)
        key = replace(args[i], r"^--" => "")
        haskey(opts, key) && i < length(args) || error("usage: consumer.jl [--$(join(keys(opts), " --"))]")
        opts[key] = args[i + 1]
        i += 2
    end
    return opts
end

"""Check the frame read last; its seq number, or 0 when anything is wrong."""
function check_frame(c, fi::FrameInfo)
    k = UInt64(0); stamp = NaN; px = UInt8[]; found = 0
    for idx in 0:Int(fi.stream_count) - 1
        id, _, nbytes, ptr = frame_stream(c, idx)
        if id == 1 && nbytes == 8
            k = unsafe_load(Ptr{UInt64}(ptr)); found += 1
        elseif id == 2
            px = unsafe_wrap(Array, ptr, Int(nbytes); own=false)   # shared memory, no copy
            found += 1
        elseif id == 3 && nbytes == 8
            stamp = unsafe_load(Ptr{Float64}(ptr)); found += 1
        end
    end
    if found != 3
        println(stderr, "consumer: frame $(fi.frame_id) lacks a stream of the demo schema")
        return UInt64(0)
    end
    bad = 0
    @inbounds for i in 0:length(px) - 1
        bad += px[i + 1] != UInt8((k + i) % 251)
    end
    bad += stamp != k / 1000.0 || fi.sim_time != stamp
    if bad > 0
        println(stderr, "consumer: frame $(fi.frame_id) (seq $k): $bad wrong values")
        return UInt64(0)
    end
    return k
end

function main(args)
    opts = parse_args(args)
    name = opts["name"]
    frames = parse(UInt64, opts["frames"])
    timeout_ns = parse(Int, opts["timeout-ms"]) * 1_000_000
    nctl = parse(Int, opts["send-control"])

    deadline = time_ns() + timeout_ns
    c = client_open(name)
    while c === nothing
        time_ns() < deadline || error("no region '$name'")
        sleep(0.01)
        c = client_open(name)
    end
    println("consumer (Julia): attached to '$name' as reader $(string(client_reader_id(c), base=16))")
    count = 0; bad_frames = 0; dropped = 0; first = UInt64(0); last = UInt64(0); gone = false
    try
        for i in 0:nctl-1
            until = time_ns() + timeout_ns
            while send_control(c, SHMX_TLV_CONTROL_USER, Vector{UInt8}("ping $i")) == SHMX_EFULL
                time_ns() < until || error("control ring stays full")
                sleep(0.001)
            end
        end
        last_new = time_ns()
        while frames == 0 || last < frames
            fi = read_frame(c)
            if fi !== nothing
                k = check_frame(c, fi)
                if k == 0
                    bad_frames += 1
                else
                    first == 0 && (first = k)
                    last = k; count += 1; dropped += fi.dropped; last_new = time_ns()
                end
                continue
            end
            gone && break                          # drained what the producer left
            if time_ns() - last_new > timeout_ns
                println(stderr, "consumer: no new frame for $(timeout_ns ÷ 1_000_000) ms")
                break
            end
            client_wait(c, 100_000_000) == SHMX_ECLOSED && (gone = true)
        end
    finally
        client_close(c)
    end
    println("consumer: $count frames verified (seq $first..$last), $dropped dropped, $bad_frames bad frames",
            gone ? ", producer gone" : "")
    ok = count > 0 && bad_frames == 0 && (frames == 0 || last >= frames)
    exit(ok ? 0 : 1)
end

Base.exit_on_sigint(false)
main(ARGS)
