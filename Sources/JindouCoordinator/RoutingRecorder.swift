import JindouBalancing
import JindouRouting
import Synchronization

/// `--record-routing FILE`: writes the routing the coordinator serves as a trace
/// (docs/balancing.md, "Trace file format") that `jindouctl balance simulate|plan` replay.
///
/// One trace step per engine step: each sparse layer's choices are collected while the step
/// runs (`ClusterExpertBackend.step`) and appended when it ends, in layer order. A trace has
/// one top-k for every token (the model's `num_experts_per_tok`), so tokens of requests with
/// another experts-per-token (elastic K, `auto`) are left out and counted in `skippedTokens`.
/// Each step is written (with its checksum) as soon as it completes, so a killed coordinator
/// leaves a trace whose last step at worst is torn, which the reader names.
public final class RoutingRecorder: Sendable {
    public let path: String
    public let header: TraceHeader
    /// Model layer index → trace layer (position among the sparse layers).
    let traceLayer: [Int: Int]
    private struct State {
        var recorder: TraceRecorder?
        var steps = 0
        var tokens = 0
        var skippedTokens = 0
        var error: String?
    }
    private let state: Mutex<State>

    public init(path: String, sparseLayers: [Int], expertCount: Int, expertsPerToken: Int) throws {
        self.path = path
        header = TraceHeader(experts: expertCount, layers: sparseLayers.count, topK: expertsPerToken)
        traceLayer = Dictionary(uniqueKeysWithValues: sparseLayers.enumerated().map { ($1, $0) })
        state = Mutex(State(recorder: TraceRecorder(writer: try TraceWriter(path: path, header: header))))
    }

    /// One step's routing, filled in by the MoE layers as they run.
    final class Step: Sendable {
        let decisions = Mutex<[Int: RoutingDecision]>([:])
        func record(layer: Int, _ decision: RoutingDecision) { decisions.withLock { $0[layer] = decision } }
    }

    /// Appends `step` if every sparse layer ran (a step that failed part-way is dropped).
    func finish(_ step: Step) {
        let decisions = step.decisions.withLock { $0 }
        guard decisions.count == header.layers, let first = decisions.values.first else { return }
        let k = header.topK
        let layers = decisions.keys.sorted()
        // Tokens with exactly top-k choices in every layer.
        let kept = (0..<first.tokenCount).filter { t in
            layers.allSatisfy { l in
                let d = decisions[l]!
                return t < d.tokenCount && d.offsets[t + 1] - d.offsets[t] == k
            }
        }
        let choices = layers.map { l in
            let d = decisions[l]!
            return kept.flatMap { t in d.experts[d.offsets[t]..<d.offsets[t + 1]] }
        }
        state.withLock { s in
            s.skippedTokens += first.tokenCount - kept.count
            guard !kept.isEmpty, let recorder = s.recorder else { return }
            do {
                recorder.beginStep(tokens: kept.count)
                for (index, experts) in choices.enumerated() { try recorder.record(layer: index, experts: experts) }
                try recorder.endStep()
                s.steps += 1
                s.tokens += kept.count
            } catch {
                // A full disk stops the recording, never the serving.
                s.error = "\(error)"
                try? recorder.writer.close()
                s.recorder = nil
            }
        }
    }

    /// Steps and tokens written, tokens left out (another K), and the write error that
    /// stopped the recording, if any.
    public var progress: (steps: Int, tokens: Int, skippedTokens: Int, error: String?) {
        state.withLock { ($0.steps, $0.tokens, $0.skippedTokens, $0.error) }
    }

    /// Closes the file (graceful shutdown); later steps are not recorded.
    public func close() {
        state.withLock { s in
            try? s.recorder?.writer.close()
            s.recorder = nil
        }
    }
}
