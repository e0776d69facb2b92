// Package nfqref holds the references statewall's NFQUEUE reader
// (pkg/nfq) is tested and measured against: two readers built on
// github.com/florianl/go-nfqueue v2, the library statewall's packet path
// started on. pkg/nfq's reader tests run each of them beside nfq's own
// reader, and its BenchmarkReaderImpls compares all three (numbers and
// command in bench/results/nfq-reader.md). Nothing else uses this
// package: statewall does not link go-nfqueue.
//
// A reference takes the nfq.QueueConfig and nfq.Handler that nfq.Open
// takes (Spin aside, which only nfq's reader has) and keeps nfq.Reader's
// promises: every packet read gets exactly one verdict, also at Close,
// which drains the queue as nfq's does. go-nfqueue cannot send three of
// the messages that takes (the copy mode after binding, the shutdown gate,
// the drain probe); they come from pkg/nfq/internal/nfqnl, shared with
// nfq's reader, as are the socket buffer set-up, the defaults and the
// batching bounds.
//
//   - GoNFQueue: go-nfqueue's reader and one verdict message per packet.
//     About 70 allocations per packet: mdlayher/netlink peeks at every
//     message before reading it and allocates a buffer for it, go-nfqueue
//     clones the payload and builds every verdict in several allocations.
//   - GoNFQueueBatch: the same with go-nfqueue's SetVerdictBatch, sent
//     when a poll(2) finds the socket empty: it shows what batching alone
//     gains there.
//
// The package is Linux-only; elsewhere it is empty.
package nfqref
