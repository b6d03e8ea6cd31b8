// The CPython face of the Dafny-generated core: conversions only, no decisions.
// Dafny's C++ output (generated at build time, never edited) is compiled in this same
// translation unit because DafnyRuntime.h defines non-inline functions.
#include "verikv_core.cpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

using BallotT = Ballots::Ballot;

BallotT to_ballot(const std::pair<uint64, uint64>& b) { return BallotT(b.first, b.second); }

std::pair<uint64, uint64> from_ballot(const BallotT& b) { return {b.round, b.node}; }

DafnySequence<bool> to_flags(const std::vector<bool>& flags) {
    DafnySequence<bool> seq(flags.size());
    for (size_t i = 0; i < flags.size(); i++) seq.start[i] = flags[i];
    return seq;
}

void check_flags_size(const std::vector<bool>& flags) {
    if (flags.size() >= (1ull << 32)) throw py::value_error("too many members");
}

}  // namespace


// ---- the wire and record encoding (trusted: see dafny/TRUSTED.md, "Codec") ------------------
// Little-endian, fixed-width fields; a value is a u32 length and its bytes. Decoding rejects
// short input, trailing bytes, unknown tags and oversized values. With runtime checks on, every
// decoded message is re-encoded and compared with the bytes it came from (MessageRoundTrip).

namespace codec {

using namespace ImplTypes;

constexpr uint8_t WIRE_VERSION = 1;
constexpr uint64 VALUE_SIZE_LIMIT = 64ull << 20;  // 64 MiB per value
constexpr uint64 VOTES_LIMIT = 1u << 20;

struct DecodeError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the codec copies little-endian words");

struct Writer {
    std::string buf;
    Writer() { buf.reserve(64); }
    template <typename T> void word(T v) { buf.append(reinterpret_cast<const char*>(&v), sizeof(T)); }
    void u8(uint8_t v) { buf.push_back(static_cast<char>(v)); }
    void u16(uint16_t v) { word(v); }
    void u32(uint32_t v) { word(v); }
    void u64(uint64 v) { word(static_cast<uint64_t>(v)); }
    void ballot(const Ballots::Ballot& b) { u64(b.round); u64(b.node); }
    void value(const DafnySequence<uint8>& v) {
        u32(static_cast<uint32_t>(v.size()));
        buf.append(reinterpret_cast<const char*>(v.start), v.size());
    }
};

struct Reader {
    const uint8_t* p;
    size_t len;
    size_t pos = 0;
    void need(size_t n) {
        if (len - pos < n) throw DecodeError("truncated at byte " + std::to_string(pos));
    }
    uint64 le(int n) {
        need(n);
        uint64_t v = 0;
        std::memcpy(&v, p + pos, n);  // little-endian host (static_assert above)
        pos += n;
        return v;
    }
    uint8_t u8() { return static_cast<uint8_t>(le(1)); }
    uint16_t u16() { return static_cast<uint16_t>(le(2)); }
    uint32_t u32() { return static_cast<uint32_t>(le(4)); }
    uint64 u64() { return le(8); }
    Ballots::Ballot ballot() { uint64 r = u64(); uint64 n = u64(); return Ballots::Ballot(r, n); }
    DafnySequence<uint8> value() {
        uint64 n = u32();
        if (n > VALUE_SIZE_LIMIT) throw DecodeError("value of " + std::to_string(n) + " bytes is over the limit");
        need(n);
        DafnySequence<uint8> v(n);
        if (n) std::memcpy(v.start, p + pos, n);
        pos += n;
        return v;
    }
    void end() {
        if (pos != len) throw DecodeError(std::to_string(len - pos) + " trailing bytes");
    }
};

enum MsgTag : uint8_t {
    T_PREPARE = 1, T_PROMISE, T_ACCEPT, T_ACCEPTED, T_LEARN, T_COMMIT, T_NACK, T_HEARTBEAT,
    T_HEARTBEAT_ACK, T_CATCHUP
};

void encode_msg(Writer& w, const Msg& m) {
    if (auto* x = std::get_if<Msg_Prepare>(&m.v)) { w.u8(T_PREPARE); w.ballot(x->bal); w.u64(x->fromSlot); }
    else if (auto* x = std::get_if<Msg_Promise>(&m.v)) {
        w.u8(T_PROMISE); w.ballot(x->bal); w.u64(x->logStart);
        w.u32(static_cast<uint32_t>(x->votes.size()));
        for (size_t i = 0; i < x->votes.size(); i++) {
            const SlotVote& sv = x->votes.start[i];
            w.u64(sv.slot); w.ballot(sv.bal); w.value(sv.val);
        }
    }
    else if (auto* x = std::get_if<Msg_Accept>(&m.v)) { w.u8(T_ACCEPT); w.ballot(x->bal); w.u64(x->slot); w.value(x->val); }
    else if (auto* x = std::get_if<Msg_Accepted>(&m.v)) { w.u8(T_ACCEPTED); w.ballot(x->bal); w.u64(x->slot); }
    else if (auto* x = std::get_if<Msg_Learn>(&m.v)) { w.u8(T_LEARN); w.ballot(x->bal); w.u64(x->slot); }
    else if (auto* x = std::get_if<Msg_Commit>(&m.v)) { w.u8(T_COMMIT); w.u64(x->slot); w.value(x->val); }
    else if (auto* x = std::get_if<Msg_Nack>(&m.v)) { w.u8(T_NACK); w.ballot(x->promised); }
    else if (auto* x = std::get_if<Msg_Heartbeat>(&m.v)) { w.u8(T_HEARTBEAT); w.ballot(x->bal); w.u64(x->commitUpto); w.u64(x->readSeq); }
    else if (auto* x = std::get_if<Msg_HeartbeatAck>(&m.v)) { w.u8(T_HEARTBEAT_ACK); w.ballot(x->bal); w.u64(x->readSeq); }
    else if (auto* x = std::get_if<Msg_CatchUp>(&m.v)) { w.u8(T_CATCHUP); w.u64(x->fromSlot); }
    else throw std::logic_error("unknown message variant");
}

Msg decode_msg(Reader& r) {
    uint8_t tag = r.u8();
    switch (tag) {
        case T_PREPARE: { auto b = r.ballot(); auto f = r.u64(); return Msg::create_Prepare(b, f); }
        case T_PROMISE: {
            auto b = r.ballot(); auto ls = r.u64(); uint64 count = r.u32();
            if (count > VOTES_LIMIT) throw DecodeError("promise with too many votes");
            std::vector<SlotVote> votes;
            votes.reserve(count);
            for (uint64 i = 0; i < count; i++) {
                auto slot = r.u64(); auto vb = r.ballot(); auto val = r.value();
                votes.emplace_back(slot, vb, val);
            }
            DafnySequence<SlotVote> seq(votes.size());
            for (size_t i = 0; i < votes.size(); i++) seq.start[i] = votes[i];
            return Msg::create_Promise(b, ls, seq);
        }
        case T_ACCEPT: { auto b = r.ballot(); auto s = r.u64(); auto v = r.value(); return Msg::create_Accept(b, s, v); }
        case T_ACCEPTED: { auto b = r.ballot(); auto s = r.u64(); return Msg::create_Accepted(b, s); }
        case T_LEARN: { auto b = r.ballot(); auto s = r.u64(); return Msg::create_Learn(b, s); }
        case T_COMMIT: { auto s = r.u64(); auto v = r.value(); return Msg::create_Commit(s, v); }
        case T_NACK: { auto b = r.ballot(); return Msg::create_Nack(b); }
        case T_HEARTBEAT: { auto b = r.ballot(); auto c = r.u64(); auto s = r.u64(); return Msg::create_Heartbeat(b, c, s); }
        case T_HEARTBEAT_ACK: { auto b = r.ballot(); auto s = r.u64(); return Msg::create_HeartbeatAck(b, s); }
        case T_CATCHUP: { auto f = r.u64(); return Msg::create_CatchUp(f); }
        default: throw DecodeError("unknown message tag " + std::to_string(tag));
    }
}

std::string encode_packet(const Packet& p) {
    Writer w;
    w.u8(WIRE_VERSION); w.u16(static_cast<uint16_t>(p.src)); w.u16(static_cast<uint16_t>(p.dst));
    encode_msg(w, p.msg);
    return std::move(w.buf);
}

Packet decode_packet(const uint8_t* data, size_t len) {
    Reader r{data, len};
    uint8_t version = r.u8();
    if (version != WIRE_VERSION) throw DecodeError("wire version " + std::to_string(version) + ", expected 1");
    uint64 src = r.u16(); uint64 dst = r.u16();
    Msg m = decode_msg(r);
    r.end();
    return Packet(src, dst, m);
}

enum RecTag : uint8_t { R_PROMISED = 1, R_VOTE, R_COMMIT, R_TRUNCATE, R_LEARN };

std::string encode_record(const Record& rec) {
    Writer w;
    if (auto* x = std::get_if<Record_RecPromised>(&rec.v)) { w.u8(R_PROMISED); w.ballot(x->bal); }
    else if (auto* x = std::get_if<Record_RecVote>(&rec.v)) { w.u8(R_VOTE); w.u64(x->slot); w.ballot(x->bal); w.value(x->val); }
    else if (auto* x = std::get_if<Record_RecCommit>(&rec.v)) { w.u8(R_COMMIT); w.u64(x->slot); w.value(x->val); }
    else if (auto* x = std::get_if<Record_RecTruncate>(&rec.v)) { w.u8(R_TRUNCATE); w.u64(x->logStart); }
    else if (auto* x = std::get_if<Record_RecLearn>(&rec.v)) { w.u8(R_LEARN); w.u64(x->slot); w.ballot(x->bal); }
    else throw std::logic_error("unknown record variant");
    return std::move(w.buf);
}

Record decode_record(const uint8_t* data, size_t len) {
    Reader r{data, len};
    uint8_t tag = r.u8();
    Record rec;
    switch (tag) {
        case R_PROMISED: { auto b = r.ballot(); rec = Record::create_RecPromised(b); break; }
        case R_VOTE: { auto s = r.u64(); auto b = r.ballot(); auto v = r.value(); rec = Record::create_RecVote(s, b, v); break; }
        case R_COMMIT: { auto s = r.u64(); auto v = r.value(); rec = Record::create_RecCommit(s, v); break; }
        case R_TRUNCATE: { auto s = r.u64(); rec = Record::create_RecTruncate(s); break; }
        case R_LEARN: { auto s = r.u64(); auto b = r.ballot(); rec = Record::create_RecLearn(s, b); break; }
        default: throw DecodeError("unknown record tag " + std::to_string(tag));
    }
    r.end();
    return rec;
}

}  // namespace codec

namespace {

py::bytes to_bytes(const DafnySequence<uint8>& v) {
    return py::bytes(reinterpret_cast<const char*>(v.start), v.size());
}

DafnySequence<uint8> from_buffer(const py::buffer& b) {
    py::buffer_info info = b.request();
    if (info.ndim != 1 || info.itemsize != 1) throw py::value_error("expected a bytes-like value");
    size_t n = static_cast<size_t>(info.size);
    DafnySequence<uint8> v(n);
    if (n) std::memcpy(v.start, info.ptr, n);
    return v;
}

const char* role_name(const ImplTypes::Role& r) {
    if (r.is_Role_Leader()) return "leader";
    if (r.is_Role_Candidate()) return "candidate";
    return "follower";
}

class FatalCheck : public std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One replica of the compiled core, plus the conversions between its Ready and Python values.
// The core's checkpoint records (the value CheckpointRecords returned: later steps do not change
// it), each encoded when it is asked for: a log of hundreds of MB is never copied whole (a node's
// snapshot writer streams them to its file).
class CheckpointRecords {
  public:
    using Records = decltype(std::declval<Impl::Replica&>().CheckpointRecords());
    explicit CheckpointRecords(Records recs) : recs_(std::move(recs)) {}

    size_t size() const { return recs_.size(); }

    py::bytes at(Py_ssize_t i) const {
        if (i < 0 || static_cast<size_t>(i) >= recs_.size()) throw py::index_error("record index out of range");
        return py::bytes(codec::encode_record(recs_.start[i]));
    }

  private:
    Records recs_;
};

class CoreHandle {
  public:
    CoreHandle(uint64 me, uint64 n, uint64 election_ticks, uint64 heartbeat_ticks, bool runtime_checks)
        : replica_(std::make_shared<Impl::Replica>()), me_(me), n_(n), checks_(runtime_checks) {
        if (n < 1 || n > 64) throw py::value_error("cluster_size must be between 1 and 64");
        if (me >= n) throw py::value_error("node_id must be below cluster_size");
        if (election_ticks < 1 || election_ticks > 0x100000000ull || heartbeat_ticks < 1 || heartbeat_ticks > 0x100000000ull)
            throw py::value_error("tick counts must be between 1 and 2**32");
        replica_->__ctor(me, n, election_ticks, heartbeat_ticks);
    }

    py::tuple receive(const py::buffer& message) {
        py::buffer_info info = message.request();
        if (info.ndim != 1 || info.itemsize != 1) throw py::value_error("expected bytes");
        const uint8_t* data = static_cast<const uint8_t*>(info.ptr);
        size_t len = static_cast<size_t>(info.size);
        ImplTypes::Packet p;
        try {
            p = codec::decode_packet(data, len);
        } catch (const codec::DecodeError& e) {
            throw py::value_error(std::string("malformed message: ") + e.what());
        }
        if (checks_) {
            std::string again = codec::encode_packet(p);
            if (again.size() != len || std::memcmp(again.data(), data, len) != 0)
                throw FatalCheck("MessageRoundTrip: a decoded message does not re-encode to its bytes");
        }
        ImplTypes::Ready r;
        r = replica_->Receive(p);
        return convert(r);
    }

    py::tuple tick() { return convert(replica_->Tick()); }

    py::tuple propose(const py::buffer& value) { return convert(replica_->Propose(from_buffer(value))); }

    py::tuple confirm_read() {
        auto t = replica_->ConfirmRead();
        return py::make_tuple(convert(t.get<0>()), t.get<1>(), t.get<2>());
    }

    uint64 read_index_attested(uint64 src, std::pair<uint64, uint64> promised) {
        return replica_->ReadIndexAttested(src, to_ballot(promised));
    }

    py::tuple truncate(uint64 upto) { return convert(replica_->Truncate(upto)); }

    py::tuple install_snapshot(uint64 upto) { return convert(replica_->InstallSnapshot(upto)); }

    void replay(const py::buffer& record) {
        py::buffer_info info = record.request();
        ImplTypes::Record rec;
        try {
            rec = codec::decode_record(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size));
        } catch (const codec::DecodeError& e) {
            throw py::value_error(std::string("malformed durable record: ") + e.what());
        }
        replica_->Replay(rec);
    }

    py::tuple finish_recovery() { return convert(replica_->FinishRecovery()); }

    CheckpointRecords checkpoint_records() { return CheckpointRecords(replica_->CheckpointRecords()); }

    py::dict status() {
        auto s = replica_->GetStatus();
        py::dict d;
        d["node_id"] = me_;
        d["role"] = role_name(s.role);
        d["ballot"] = py::make_tuple(s.bal.round, s.bal.node);
        d["promised"] = py::make_tuple(s.promised.round, s.promised.node);
        d["leader"] = s.leaderHint < n_ ? py::cast(s.leaderHint) : py::none();
        d["commit_upto"] = s.commitUpto;
        d["log_start"] = s.logStart;
        d["next_slot"] = s.nextSlot;
        d["read_confirmed"] = s.readConfirmed;
        return d;
    }

  private:
    py::tuple convert(const ImplTypes::Ready& r) {
        py::list records, messages, commits, early;
        for (size_t i = 0; i < r.records.size(); i++) records.append(py::bytes(codec::encode_record(r.records.start[i])));
        for (size_t i = 0; i < r.packets.size(); i++) {
            const auto& p = r.packets.start[i];
            messages.append(py::make_tuple(p.dst, py::bytes(codec::encode_packet(p))));
        }
        for (size_t i = 0; i < r.early.size(); i++) {
            const auto& p = r.early.start[i];
            early.append(py::make_tuple(p.dst, py::bytes(codec::encode_packet(p))));
        }
        for (size_t i = 0; i < r.commits.size(); i++) {
            const auto& c = r.commits.start[i];
            commits.append(py::make_tuple(c.slot, to_bytes(c.val)));
        }
        py::list need_snapshot;
        for (size_t i = 0; i < r.needSnapshot.size(); i++) need_snapshot.append(r.needSnapshot.start[i]);
        return py::make_tuple(records, messages, commits, r.accepted, early, r.sync, need_snapshot, r.earlyAfter);
    }

    std::shared_ptr<Impl::Replica> replica_;
    uint64 me_, n_;
    bool checks_;
};

}  // namespace

PYBIND11_MODULE(_core, m) {
    py::register_exception<FatalCheck>(m, "FatalCheck", PyExc_RuntimeError);
    py::class_<CheckpointRecords>(m, "CheckpointRecords",
                                  "The core's checkpoint records, a sequence of bytes encoded as they are read.")
        .def("__len__", &CheckpointRecords::size)
        .def("__getitem__", &CheckpointRecords::at);
    py::class_<CoreHandle>(m, "Replica", "One replica of the Dafny-generated Multi-Paxos core (Impl.Replica).")
        .def(py::init<uint64, uint64, uint64, uint64, bool>(), py::arg("node_id"), py::arg("cluster_size"),
             py::arg("election_ticks"), py::arg("heartbeat_ticks"), py::arg("runtime_checks") = true)
        .def("receive", &CoreHandle::receive)
        .def("tick", &CoreHandle::tick)
        .def("propose", &CoreHandle::propose)
        .def("confirm_read", &CoreHandle::confirm_read)
        .def("read_index_attested", &CoreHandle::read_index_attested)
        .def("truncate", &CoreHandle::truncate)
        .def("install_snapshot", &CoreHandle::install_snapshot)
        .def("replay", &CoreHandle::replay)
        .def("finish_recovery", &CoreHandle::finish_recovery)
        .def("checkpoint_records", &CoreHandle::checkpoint_records)
        .def("status", &CoreHandle::status);
    m.attr("WINDOW") = ImplBounds::__default::WINDOW;
    m.attr("RECORD_COMMIT_TAG") = static_cast<int>(codec::R_COMMIT);
    m.attr("RECORD_LEARN_TAG") = static_cast<int>(codec::R_LEARN);
    m.def("decode_message", [](const py::buffer& b) {
        py::buffer_info info = b.request();
        try {
            auto p = codec::decode_packet(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.size));
            return py::bytes(codec::encode_packet(p));
        } catch (const codec::DecodeError& e) {
            throw py::value_error(std::string("malformed message: ") + e.what());
        }
    }, "Decode a message and encode it again (for round-trip tests).");

    m.doc() = "verikv's consensus core, extracted from the Dafny sources in dafny/ and compiled.";

    m.def("ballot_lt", [](std::pair<uint64, uint64> a, std::pair<uint64, uint64> b) {
        return Ballots::__default::BalLt(to_ballot(a), to_ballot(b));
    }, "BalLt: the strict total order on (round, node) ballots.");
    m.def("ballot_le", [](std::pair<uint64, uint64> a, std::pair<uint64, uint64> b) {
        return Ballots::__default::BalLe(to_ballot(a), to_ballot(b));
    }, "BalLe: a == b or BalLt(a, b).");
    m.def("ballot_max", [](std::pair<uint64, uint64> a, std::pair<uint64, uint64> b) {
        return from_ballot(BallotFacts::__default::BalMax(to_ballot(a), to_ballot(b)));
    }, "BalMax: the larger of two ballots.");
    m.def("next_ballot", [](std::pair<uint64, uint64> seen, uint64 me) {
        if (seen.first == UINT64_MAX) throw py::value_error("ballot round exhausted");
        return from_ballot(BallotFacts::__default::NextBallot(to_ballot(seen), me));
    }, "NextBallot: the smallest ballot of node `me` above `seen`.");
    m.def("quorum_size", [](uint64 n) { return QuorumFacts::__default::QuorumSize64(n); },
          "QuorumSize64: members needed for a majority of n.");
    m.def("count_acks", [](const std::vector<bool>& flags) {
        check_flags_size(flags);
        return QuorumFacts::__default::CountAcks(to_flags(flags));
    }, "CountAcks: number of set flags.");
    m.def("has_quorum", [](const std::vector<bool>& flags) {
        check_flags_size(flags);
        return QuorumFacts::__default::CheckQuorum(to_flags(flags));
    }, "CheckQuorum: do the flagged members form a majority of all len(flags) members?");
}
