# shmx.jl - minimal ccall bindings of libshmx for the Julia examples.
#
# Only what producer.jl and consumer.jl use.  Every struct below mirrors a
# struct of shmx.h field by field (Julia lays out isbits fields with the C
# rules); tests/test_julia.py compares each field's offset and each struct's
# size with what the C compiler says, so a mistake here fails a test even on
# a machine without Julia.  Mutable structs are passed as Ref{T}: ccall then
# hands C a pointer to the object itself, and C fills it in.
#
# The library: $SHMX_LIB if set, else "libshmx.so.1" from the loader's path
# (LD_LIBRARY_PATH=$PREFIX/lib after `make -C csrc install PREFIX=...`).

const LIBSHMX = get(ENV, "SHMX_LIB", "libshmx.so.1")

# Statuses (shmx.h SHMX_STATUS_LIST; values are fixed forever).
const SHMX_OK = Cint(0)
const SHMX_ENOENT = Cint(-3)
const SHMX_ETOOBIG = Cint(-9)
const SHMX_EFULL = Cint(-12)
const SHMX_EAGAIN = Cint(-14)
const SHMX_ETIMEDOUT = Cint(-15)
const SHMX_ECLOSED = Cint(-16)
const SHMX_EBUSY = Cint(-18)

const SHMX_DT_U8 = UInt32(3)
const SHMX_DT_U64 = UInt32(9)
const SHMX_DT_F64 = UInt32(13)
const SHMX_LAYOUT_SOA_SCALAR = UInt32(0)
const SHMX_TLV_CONTROL_USER = UInt32(0x3000)

# shmx_stream_spec (immutable: an array of them is handed to C as is)
struct StreamSpec
    stream_id::UInt32
    dtype::UInt32
    components::UInt32
    layout::UInt32
    bytes_per_elem::UInt32
    name::Ptr{UInt8}
    extra::Ptr{Cvoid}
    extra_len::UInt32
end

# shmx_server_config
mutable struct ServerConfig
    struct_size::UInt32
    slots::UInt32
    reader_slots::UInt32
    static_bytes_cap::UInt32
    frame_bytes_cap::UInt32
    control_per_reader::UInt32
    mode::UInt32
    checksum::UInt32
    streams::Ptr{StreamSpec}
    stream_count::UInt32
    dir::Ptr{UInt8}
    ServerConfig() = new(0, 0, 0, 0, 0, 0, 0, 0, Ptr{StreamSpec}(C_NULL), 0, Ptr{UInt8}(C_NULL))
end

# shmx_header_info
mutable struct HeaderInfo
    struct_size::UInt32
    version_major::UInt32
    version_minor::UInt32
    extended::UInt32
    magic::UInt64
    session_id::UInt64
    frame_seq::UInt64
    total_bytes::UInt64
    static_hash::UInt64
    static_gen::UInt32
    static_bytes_used::UInt32
    static_bytes_cap::UInt32
    slots::UInt32
    slot_stride::UInt32
    frame_bytes_cap::UInt32
    slot_payload_cap::UInt32
    reader_slots::UInt32
    control_per_reader::UInt32
    readers_connected::UInt32
    write_index::UInt32
    closed::UInt32
    owner_alive::UInt32
    checksum_policy::UInt32
    owner_pid::UInt64
    owner_heartbeat::UInt64
    overruns::UInt64
    HeaderInfo() = (h = new(); h.struct_size = UInt32(sizeof(HeaderInfo)); h)
end

# shmx_frame_info
mutable struct FrameInfo
    struct_size::UInt32
    payload_bytes::UInt32
    tlv_count::UInt32
    stream_count::UInt32
    frame_id::UInt64
    sim_time::Float64
    dropped::UInt64
    layout_id::UInt64
    dropped_total::UInt64
    published::UInt64
    FrameInfo() = new(UInt32(sizeof(FrameInfo)), 0, 0, 0, 0, 0.0, 0, 0, 0, 0)
end

# shmx_stream_view
mutable struct StreamView
    struct_size::UInt32
    stream_id::UInt32
    elem_count::UInt32
    bytes::UInt32
    offset::UInt64
    data::Ptr{Cvoid}
    StreamView() = new(UInt32(sizeof(StreamView)), 0, 0, 0, 0, C_NULL)
end

# shmx_control_msg
mutable struct ControlMsg
    struct_size::UInt32
    type::UInt32
    length::UInt32
    reader_index::UInt32
    reader_id::UInt64
    ControlMsg() = new(UInt32(sizeof(ControlMsg)), 0, 0, 0, 0)
end

shmx_version() = unsafe_string(ccall((:shmx_version, LIBSHMX), Ptr{UInt8}, ()))
shmx_strerror(st) = unsafe_string(ccall((:shmx_strerror, LIBSHMX), Ptr{UInt8}, (Cint,), st))
# Thread-local in C: read it right after the failed call, on the same task.
shmx_last_error() = unsafe_string(ccall((:shmx_last_error, LIBSHMX), Ptr{UInt8}, ()))

"""Throw an error naming the call, the status and the library's detail."""
function check(what::AbstractString, st::Cint)
    st == SHMX_OK && return st
    error("shmx: $what: $(shmx_strerror(st)) ($(shmx_last_error()))")
end

# ------------------------------------------------------------------ server

function server_config()
    cfg = ServerConfig()
    ccall((:shmx_server_config_init, LIBSHMX), Cvoid, (Ref{ServerConfig},), cfg)
    return cfg
end

function server_create(name::AbstractString, cfg::ServerConfig)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    st = ccall((:shmx_server_create, LIBSHMX), Cint, (Cstring, Ref{ServerConfig}, Ref{Ptr{Cvoid}}),
               name, cfg, out)
    check("create '$name'", st)
    return out[]
end

server_destroy(s::Ptr{Cvoid}) = ccall((:shmx_server_destroy, LIBSHMX), Cvoid, (Ptr{Cvoid},), s)

"""The frame handle, or `nothing` when every slot is pinned (try again)."""
function begin_frame(s::Ptr{Cvoid})
    frame = Ref{UInt64}(0)
    st = ccall((:shmx_server_begin_frame, LIBSHMX), Cint, (Ptr{Cvoid}, Ref{UInt64}), s, frame)
    st == SHMX_EBUSY && return nothing
    check("begin_frame", st)
    return frame[]
end

"""Reserve `count` elements of a stream in the frame: a Vector{UInt8} over
the slot in shared memory (zero copy), valid until publish."""
function loan(s::Ptr{Cvoid}, frame::UInt64, stream_id::Integer, count::Integer, bytes_per_elem::Integer)
    ptr = Ref{Ptr{Cvoid}}(C_NULL)
    st = ccall((:shmx_server_loan, LIBSHMX), Cint, (Ptr{Cvoid}, UInt64, UInt32, UInt32, Ref{Ptr{Cvoid}}),
               s, frame, stream_id, count, ptr)
    check("loan", st)
    return unsafe_wrap(Array, Ptr{UInt8}(ptr[]), Int(count) * Int(bytes_per_elem); own=false)
end

"""Copy one isbits value (e.g. a UInt64 or Float64) into the frame as a
one-element stream."""
function append_value(s::Ptr{Cvoid}, frame::UInt64, stream_id::Integer, value::T) where {T}
    box = Ref{T}(value)
    st = GC.@preserve box ccall((:shmx_server_append, LIBSHMX), Cint,
                                (Ptr{Cvoid}, UInt64, UInt32, Ptr{Cvoid}, UInt64, UInt32),
                                s, frame, stream_id, Base.unsafe_convert(Ptr{Cvoid}, box), sizeof(T), 1)
    check("append", st)
end

publish(s::Ptr{Cvoid}, frame::UInt64, sim_time::Float64) =
    check("publish", ccall((:shmx_server_publish, LIBSHMX), Cint, (Ptr{Cvoid}, UInt64, Cdouble),
                           s, frame, sim_time))

function header_info(s::Ptr{Cvoid})
    h = HeaderInfo()
    check("header_info", ccall((:shmx_server_header_info, LIBSHMX), Cint, (Ptr{Cvoid}, Ref{HeaderInfo}), s, h))
    return h
end

"""The next control message as (reader_id, type, bytes), or `nothing`."""
function next_control(s::Ptr{Cvoid}, buf::Vector{UInt8})
    msg = ControlMsg()
    st = ccall((:shmx_server_next_control, LIBSHMX), Cint, (Ptr{Cvoid}, Ref{ControlMsg}, Ptr{UInt8}, UInt32),
               s, msg, buf, length(buf))
    st == SHMX_EAGAIN && return nothing
    if st == SHMX_ETOOBIG          # kept by the library: grow and take it again
        resize!(buf, Int(msg.length))
        return next_control(s, buf)
    end
    check("next_control", st)
    return (msg.reader_id, msg.type, buf[1:Int(msg.length)])
end

wait_control(s::Ptr{Cvoid}, timeout_ns::Integer) =
    ccall((:shmx_server_wait_control, LIBSHMX), Cint, (Ptr{Cvoid}, Int64), s, timeout_ns)

# ------------------------------------------------------------------ client

"""Open a client; `nothing` while the region does not exist."""
function client_open(name::AbstractString)
    out = Ref{Ptr{Cvoid}}(C_NULL)
    st = ccall((:shmx_client_open, LIBSHMX), Cint, (Cstring, Ptr{Cvoid}, Ref{Ptr{Cvoid}}), name, C_NULL, out)
    st == SHMX_ENOENT && return nothing
    check("open '$name'", st)
    return out[]
end

client_close(c::Ptr{Cvoid}) = ccall((:shmx_client_close, LIBSHMX), Cvoid, (Ptr{Cvoid},), c)
client_reader_id(c::Ptr{Cvoid}) = ccall((:shmx_client_reader_id, LIBSHMX), UInt64, (Ptr{Cvoid},), c)

"""Read with shmx_client_next (or _latest): a FrameInfo, or `nothing` when
there is no new frame yet."""
function read_frame(c::Ptr{Cvoid}; latest::Bool=false)
    fi = FrameInfo()
    st = latest ?
        ccall((:shmx_client_latest, LIBSHMX), Cint, (Ptr{Cvoid}, Ref{FrameInfo}), c, fi) :
        ccall((:shmx_client_next, LIBSHMX), Cint, (Ptr{Cvoid}, Ref{FrameInfo}), c, fi)
    st == SHMX_EAGAIN && return nothing
    check(latest ? "latest" : "next", st)
    return fi
end

"""Stream `index` of the frame read last: (stream_id, elem_count, bytes,
pointer into shared memory).  Valid until the client's next read."""
function frame_stream(c::Ptr{Cvoid}, index::Integer)
    v = StreamView()
    check("frame_stream", ccall((:shmx_client_frame_stream, LIBSHMX), Cint,
                                (Ptr{Cvoid}, UInt32, Ref{StreamView}), c, index, v))
    return (v.stream_id, v.elem_count, v.bytes, Ptr{UInt8}(v.data))
end

"""Sleep until a newer frame (SHMX_OK), the timeout (SHMX_ETIMEDOUT) or the
end of the server (SHMX_ECLOSED)."""
client_wait(c::Ptr{Cvoid}, timeout_ns::Integer) =
    ccall((:shmx_client_wait, LIBSHMX), Cint, (Ptr{Cvoid}, Int64), c, timeout_ns)

"""SHMX_OK, or SHMX_EFULL when the ring is full (try again later)."""
function send_control(c::Ptr{Cvoid}, type::Integer, data::Vector{UInt8})
    st = ccall((:shmx_client_send_control, LIBSHMX), Cint, (Ptr{Cvoid}, UInt32, Ptr{UInt8}, UInt32),
               c, type, data, length(data))
    st == SHMX_EFULL && return st
    return check("send_control", st)
end
