// The CPython face of the Dafny-generated core: conversions only, no decisions.
// Dafny's C++ output (generated at build time, never edited) is compiled in this same
// translation unit because DafnyRuntime.h defines non-inline functions.
#include "verikv_core.cpp"

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

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

PYBIND11_MODULE(_core, m) {
    m.doc() = "verikv's consensus core, extracted from the Dafny sources in dafny/ and compiled.";

    m.def("ballot_lt", [](std::pair<uint64, uint64> a, std::pair<uint64, uint64> b) {
        return Ballots::__default::BalLt(to_ballot(a), to_ballot(b));
    }, "BalLt: the strict total order on (round, node) ballots.");
    m.def("ballot_le", [](std::pair<uint64, uint64> a, std::pair<uint64, uint64> b) {
        return Ballots::__default::BalLe(to_ballot(a), to_ballot(b));
    }, "BalLe: a == b or BalLt(a, b).");
    m.def("ballot_max", [](std::pair<uint64, uint64> a, std::pair<uint64, uint64> b) {
        return from_ballot(Ballots::__default::BalMax(to_ballot(a), to_ballot(b)));
    }, "BalMax: the larger of two ballots.");
    m.def("next_ballot", [](std::pair<uint64, uint64> seen, uint64 me) {
        if (seen.first == UINT64_MAX) throw py::value_error("ballot round exhausted");
        return from_ballot(Ballots::__default::NextBallot(to_ballot(seen), me));
    }, "NextBallot: the smallest ballot of node `me` above `seen`.");
    m.def("quorum_size", [](uint64 n) { return Quorums::__default::QuorumSize64(n); },
          "QuorumSize64: members needed for a majority of n.");
    m.def("count_acks", [](const std::vector<bool>& flags) {
        check_flags_size(flags);
        return Quorums::__default::CountAcks(to_flags(flags));
    }, "CountAcks: number of set flags.");
    m.def("has_quorum", [](const std::vector<bool>& flags) {
        check_flags_size(flags);
        return Quorums::__default::CheckQuorum(to_flags(flags));
    }, "CheckQuorum: do the flagged members form a majority of all len(flags) members?");
}
