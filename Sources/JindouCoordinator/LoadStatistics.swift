import JindouModel
import JindouPlacement
import Synchronization

/// Routing statistics: since start (what `rebalance` fell back on before windows existed)
/// and over a sliding window of per-second buckets (`--load-window`), per layer, per
/// expert and per worker (`GET /v1/admin/load`, `/metrics`, `rebalance`, serving bias).
///
/// The dispatch path records once per MoE-layer dispatch (not per token) under one short
/// lock; buckets are preallocated and reset in place when the ring wraps, so recording
/// allocates nothing once every worker name has been seen.
public final class LoadStatistics: Sendable {
    /// What one worker did, summed over dispatches.
    public struct WorkerCounts: Sendable, Equatable {
        /// (token, expert) assignments it computed.
        public var assignments = 0
        /// Layer dispatches it received.
        public var dispatches = 0
        /// Distinct experts it computed, summed over dispatches (÷ dispatches: activated experts per step).
        public var activatedExperts = 0
        public var bytesSent: UInt64 = 0
        public var bytesReceived: UInt64 = 0
        /// Dispatch round trips (send, worker compute, combine), summed.
        public var dispatchNanoseconds: UInt64 = 0
        /// Expert computation on the worker (as it reports in its COMBINE), summed.
        public var computeNanoseconds: UInt64 = 0

        public init() {}

        mutating func add(_ other: WorkerCounts) {
            assignments += other.assignments
            dispatches += other.dispatches
            activatedExperts += other.activatedExperts
            bytesSent += other.bytesSent
            bytesReceived += other.bytesReceived
            dispatchNanoseconds += other.dispatchNanoseconds
            computeNanoseconds += other.computeNanoseconds
        }
    }

    /// Sums over the window (or since start).
    public struct Snapshot: Sendable {
        /// Seconds covered (≤ the window; less just after start).
        public var seconds: Int
        /// Tokens routed (counted once per step, at the first sparse layer).
        public var tokens = 0
        /// Engine steps routed (counted at the first sparse layer).
        public var steps = 0
        /// Layer → per-expert assignments.
        public var experts: [Int: [Int]] = [:]
        public var workers: [String: WorkerCounts] = [:]
        /// Worker → layer → assignments.
        public var layerAssignments: [String: [Int: Int]] = [:]
    }

    private struct Bucket {
        var second: Int64 = -1
        var tokens = 0
        var steps = 0
        /// `slot(layer) * expertCount + expert`.
        var experts: [Int]
        var workers: [String: WorkerCounts] = [:]
        /// Worker → assignments per sparse-layer slot.
        var layerAssignments: [String: [Int]] = [:]

        mutating func reset(to second: Int64) {
            self.second = second
            tokens = 0
            steps = 0
            for i in experts.indices { experts[i] = 0 }
            for key in workers.keys { workers[key] = WorkerCounts() }
            for key in layerAssignments.keys { layerAssignments[key] = [Int](repeating: 0, count: layerAssignments[key]!.count) }
        }
    }

    private struct State {
        var ring: [Bucket]
        var total: Bucket
    }

    private let state: Mutex<State>
    let expertCount: Int
    /// Tokens are counted once per step, at this layer.
    let firstLayer: Int
    let sparseLayers: [Int]
    /// Layer → index into a bucket's expert rows (-1: dense layer).
    private let slots: [Int]
    public let windowSeconds: Int
    private let origin = ContinuousClock.now

    public init(expertCount: Int, sparseLayers: [Int], windowSeconds: Int = 60) {
        precondition(windowSeconds >= 1, "the load window is at least one second")
        self.expertCount = expertCount
        self.sparseLayers = sparseLayers
        firstLayer = sparseLayers.first ?? 0
        self.windowSeconds = windowSeconds
        var slots = [Int](repeating: -1, count: (sparseLayers.max() ?? 0) + 1)
        for (i, layer) in sparseLayers.enumerated() { slots[layer] = i }
        self.slots = slots
        let empty = Bucket(experts: [Int](repeating: 0, count: sparseLayers.count * expertCount))
        state = Mutex(State(ring: [Bucket](repeating: empty, count: windowSeconds), total: empty))
    }

    /// Seconds since this store was created (the bucket clock).
    public var now: Int64 { Int64((ContinuousClock.now - origin).components.seconds) }

    /// Records one MoE-layer dispatch: the experts chosen by its tokens and what each
    /// worker did. `second` is for tests (default: now).
    public func record(layer: Int, experts: [Int32], tokens: Int, workers: [(String, WorkerCounts)], second: Int64? = nil) {
        guard layer < slots.count, slots[layer] >= 0 else { return }
        let base = slots[layer] * expertCount
        let countTokens = layer == firstLayer
        let second = second ?? now
        state.withLock { s in
            let index = Int(second % Int64(windowSeconds))
            if s.ring[index].second != second { s.ring[index].reset(to: second) }
            s.ring[index].experts.withUnsafeMutableBufferPointer { window in
                s.total.experts.withUnsafeMutableBufferPointer { total in
                    for e in experts {
                        window[base + Int(e)] += 1
                        total[base + Int(e)] += 1
                    }
                }
            }
            let layerSlots = sparseLayers.count
            for (name, counts) in workers {
                s.ring[index].workers[name, default: WorkerCounts()].add(counts)
                s.total.workers[name, default: WorkerCounts()].add(counts)
                s.ring[index].layerAssignments[name, default: [Int](repeating: 0, count: layerSlots)][slots[layer]] += counts.assignments
                s.total.layerAssignments[name, default: [Int](repeating: 0, count: layerSlots)][slots[layer]] += counts.assignments
            }
            if countTokens {
                s.ring[index].tokens += tokens
                s.total.tokens += tokens
                s.ring[index].steps += 1
                s.total.steps += 1
            }
        }
    }

    /// Sums over the last `windowSeconds` seconds (ending at `second`, default now).
    public func window(at second: Int64? = nil) -> Snapshot {
        let second = second ?? now
        let oldest = second - Int64(windowSeconds) + 1
        let (tokens, steps, rows, workers, perLayer) = state.withLock { s in
            var rows = [Int](repeating: 0, count: sparseLayers.count * expertCount)
            var workers: [String: WorkerCounts] = [:]
            var perLayer: [String: [Int]] = [:]
            var tokens = 0
            var steps = 0
            for bucket in s.ring where bucket.second >= oldest && bucket.second <= second {
                tokens += bucket.tokens
                steps += bucket.steps
                for i in rows.indices { rows[i] += bucket.experts[i] }
                for (name, counts) in bucket.workers { workers[name, default: WorkerCounts()].add(counts) }
                for (name, counts) in bucket.layerAssignments {
                    var sum = perLayer[name] ?? [Int](repeating: 0, count: counts.count)
                    for i in counts.indices { sum[i] += counts[i] }
                    perLayer[name] = sum
                }
            }
            return (tokens, steps, rows, workers, perLayer)
        }
        return snapshot(seconds: Int(min(Int64(windowSeconds), second + 1)), tokens: tokens, steps: steps, rows: rows, workers: workers,
                        layerAssignments: perLayer)
    }

    /// Sums since start.
    public var total: Snapshot {
        let (tokens, steps, rows, workers, perLayer) = state.withLock {
            ($0.total.tokens, $0.total.steps, $0.total.experts, $0.total.workers, $0.total.layerAssignments)
        }
        return snapshot(seconds: Int(now + 1), tokens: tokens, steps: steps, rows: rows, workers: workers, layerAssignments: perLayer)
    }

    private func snapshot(seconds: Int, tokens: Int, steps: Int, rows: [Int], workers: [String: WorkerCounts],
                          layerAssignments: [String: [Int]]) -> Snapshot {
        var result = Snapshot(seconds: seconds, tokens: tokens, steps: steps, workers: workers.filter { $0.value.dispatches > 0 })
        for (name, counts) in layerAssignments where result.workers[name] != nil {
            result.layerAssignments[name] = Dictionary(uniqueKeysWithValues: zip(sparseLayers, counts))
        }
        for (i, layer) in sparseLayers.enumerated() {
            let row = Array(rows[(i * expertCount)..<((i + 1) * expertCount)])
            if row.contains(where: { $0 > 0 }) { result.experts[layer] = row }
        }
        return result
    }

    /// Per-(layer, expert) load for placement: the window's if it saw any traffic, else since start.
    public var perExpert: [ExpertKey: Double] { loadForPlacement.load }

    /// Per-(layer, expert) load for placement and the steps it was measured over: the
    /// window's if it saw any traffic, else since start.
    public var loadForPlacement: (load: [ExpertKey: Double], steps: Int) {
        var source = window()
        if source.experts.isEmpty { source = total }
        var result: [ExpertKey: Double] = [:]
        for (layer, row) in source.experts { for (e, n) in row.enumerated() { result[ExpertKey(layer: layer, expert: e)] = Double(n) } }
        return (result, source.steps)
    }
}
