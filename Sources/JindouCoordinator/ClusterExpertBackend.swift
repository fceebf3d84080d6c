import JindouModel
import JindouPlacement
import JindouRouting
import JindouWire

/// The coordinator's `ExpertBackend`: at every MoE layer it splits the routing by the
/// workers that host each chosen expert, sends every worker its tokens concurrently
/// (dispatch), and adds up what comes back (combine).
///
/// Tokens of an expert with replicas are spread over them (token t uses replica
/// t mod replicas). Partial sums are added in worker order, so results are
/// deterministic; they equal the single-process engine up to float re-association.
public struct ClusterExpertBackend: ExpertBackend {
    public let pool: WorkerPool
    public let placement: Placement
    public let hiddenSize: Int
    public let wireDType: WireDType
    /// Worker index in the placement → index in the pool.
    public let poolIndex: [Int]

    public init(pool: WorkerPool, placement: Placement, hiddenSize: Int, wireDType: WireDType = .f32) async throws {
        self.pool = pool
        self.placement = placement
        self.hiddenSize = hiddenSize
        self.wireDType = wireDType
        let names = await pool.workers.map(\.name)
        poolIndex = try placement.workers.map { name in
            guard let index = names.firstIndex(of: name) else { throw PlacementError.unknownWorker(name) }
            return index
        }
    }

    /// One worker's share of a layer: which batch tokens it gets and their routing.
    public struct Share: Sendable {
        public var tokens: [Int] = []
        public var routing = RoutingDecision()
    }

    /// Splits a layer's routing by worker.
    public func split(layer: Int, routing: RoutingDecision) throws -> [Int: Share] {
        var shares: [Int: Share] = [:]
        var perWorker: [Int: ([Int32], [Float])] = [:]
        for t in 0..<routing.tokenCount {
            perWorker.removeAll(keepingCapacity: true)
            for i in routing.offsets[t]..<routing.offsets[t + 1] {
                let key = ExpertKey(layer: layer, expert: Int(routing.experts[i]))
                let hosts = placement.hostsOf(key)
                guard !hosts.isEmpty else { throw PlacementError.unhosted(layer: layer, expert: key.expert) }
                let worker = hosts[t % hosts.count]
                perWorker[worker, default: ([], [])].0.append(routing.experts[i])
                perWorker[worker, default: ([], [])].1.append(routing.weights[i])
            }
            for (worker, choice) in perWorker {
                shares[worker, default: Share()].tokens.append(t)
                shares[worker, default: Share()].routing.append(experts: choice.0, weights: choice.1)
            }
        }
        return shares
    }

    public func routedExperts(layer: Int, hidden: [Float], tokenCount: Int, routing: RoutingDecision) async throws -> [Float] {
        let h = hiddenSize
        let shares = try split(layer: layer, routing: routing)
        let partials = try await withThrowingTaskGroup(of: (Int, [Float]).self) { group in
            for (worker, share) in shares {
                var rows = [Float]()
                rows.reserveCapacity(share.tokens.count * h)
                for t in share.tokens { rows.append(contentsOf: hidden[(t * h)..<((t + 1) * h)]) }
                let message = DispatchMessage(
                    requestID: pool.nextRequestID(), layer: layer, placementVersion: placement.version,
                    hiddenSize: h, dtype: wireDType, routing: share.routing, hidden: rows)
                let index = poolIndex[worker]
                group.addTask {
                    let reply = try await pool.exchange(index, message.frame())
                    let combine: CombineMessage
                    do {
                        combine = try CombineMessage(frame: reply)
                    } catch {
                        throw ClusterError.badReply(worker: await pool.label(index), reason: "\(error)")
                    }
                    guard combine.requestID == message.requestID, combine.output.count == share.tokens.count * h else {
                        throw ClusterError.badReply(
                            worker: await pool.label(index),
                            reason: "combine for request \(combine.requestID) with \(combine.output.count) values, expected request \(message.requestID) with \(share.tokens.count * h)")
                    }
                    return (worker, combine.output)
                }
            }
            var collected: [Int: [Float]] = [:]
            for try await (worker, output) in group { collected[worker] = output }
            return collected
        }
        var output = [Float](repeating: 0, count: tokenCount * h)
        output.withUnsafeMutableBufferPointer { out in
            for worker in partials.keys.sorted() {
                let share = shares[worker]!
                partials[worker]!.withUnsafeBufferPointer { partial in
                    for (row, t) in share.tokens.enumerated() {
                        for i in 0..<h { out[t * h + i] += partial[row * h + i] }
                    }
                }
            }
        }
        return output
    }
}
