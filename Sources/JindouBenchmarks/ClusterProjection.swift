import Foundation
import JindouModel

/// `jindouctl bench project`: the latency model (`LatencyModel`) applied to real models on
/// real clusters this machine cannot hold, for Jindou and for a llama.cpp-RPC layer split.
///
/// Decode on CPUs is memory-bound at small batches, so compute is estimated from bytes:
/// - the coordinator reads every non-expert weight once per step (attention, norms, router,
///   shared experts, dense layers, LM head) at the host's memory bandwidth, plus 2 FLOPs
///   per weight and token at the host's FLOP rate;
/// - the busiest worker reads, per MoE layer, the experts that the step's tokens touch among
///   its share (E/W experts, each touched with probability 1 − (1 − k/E)^B), plus the FLOPs
///   of its tokens' experts;
/// - a llama.cpp RPC layer split runs the hosts one after another: each reads its layers'
///   non-expert weights and touched experts, and the step pays `rpcRoundTripsPerHost`
///   round trips per host (measured by `bench network`) plus the activations between hosts.
/// Parameter counts come from the models' own config.json (the `synth` presets), bits per
/// weight from a GGUF file of the mix (measured, e.g. of a synthetic model quantised to it).
public struct ClusterProjection {
    public struct Machine: Codable, Sendable {
        public var hosts: Int
        public var memoryBytesPerHost: Double
        public var memoryBytesPerSecond: Double
        public var flopsPerSecond: Double
        public var linkBitsPerSecond: Double
        public var roundTripSeconds: Double

        public init(hosts: Int, memoryBytesPerHost: Double, memoryBytesPerSecond: Double, flopsPerSecond: Double,
                    linkBitsPerSecond: Double, roundTripSeconds: Double) {
            self.hosts = hosts
            self.memoryBytesPerHost = memoryBytesPerHost
            self.memoryBytesPerSecond = memoryBytesPerSecond
            self.flopsPerSecond = flopsPerSecond
            self.linkBitsPerSecond = linkBitsPerSecond
            self.roundTripSeconds = roundTripSeconds
        }
    }

    /// A model's weights as the projection needs them.
    public struct Weights: Codable, Sendable {
        public var name: String
        public var layers: Int
        public var moeLayers: Int
        public var hiddenSize: Int
        public var experts: Int
        public var expertsPerToken: Int
        /// Parameters of one routed expert; of everything a step reads that is not a routed
        /// expert (the token embedding's rows are not read in full, unless it is the LM head too).
        public var expertParameters: Double
        public var otherParameters: Double
        public var embeddingParameters: Double
        public var expertBitsPerWeight: Double
        public var otherBitsPerWeight: Double

        public var totalBytes: Double {
            (Double(moeLayers * experts) * expertParameters * expertBitsPerWeight + (otherParameters + embeddingParameters) * otherBitsPerWeight) / 8
        }

        /// From a config.json preset, with `layers` the full model's.
        public init(preset: SyntheticModelShape, expertBitsPerWeight: Double, otherBitsPerWeight: Double) throws {
            let description = try ModelDescription(configJSON: Data(preset.configJSON.utf8), path: "preset \(preset.name)")
            name = preset.name
            layers = description.layerCount
            moeLayers = description.sparseLayers.count
            hiddenSize = description.hiddenSize
            experts = description.expertCount
            expertsPerToken = description.router.expertsPerToken
            func parameters(_ requests: [TensorRequest]) -> Double { requests.reduce(0) { $0 + Double(($1.shape ?? []).reduce(1, *)) } }
            expertParameters = parameters(description.expertTensors(ExpertKey(layer: description.sparseLayers[0], expert: 0)))
            let embedding = Double(description.vocabularySize * description.hiddenSize)
            embeddingParameters = description.tieWordEmbeddings ? 0 : embedding
            otherParameters = parameters(description.nonExpertTensors()) - embeddingParameters
            self.expertBitsPerWeight = expertBitsPerWeight
            self.otherBitsPerWeight = otherBitsPerWeight
        }
    }

    /// Bits per weight of the routed experts (`ffn_*_exps`) and of everything else in a GGUF file.
    public static func measuredBits(gguf path: String) throws -> (experts: Double, other: Double) {
        let file = try GGUFFile(path: path)
        var expertBits = 0.0, expertCount = 0.0, otherBits = 0.0, otherCount = 0.0
        for tensor in file.tensors {
            let elements = Double(tensor.dimensions.reduce(1, *))
            if tensor.name.contains("_exps.") {
                expertBits += Double(tensor.byteCount * 8)
                expertCount += elements
            } else {
                otherBits += Double(tensor.byteCount * 8)
                otherCount += elements
            }
        }
        return (expertBits / max(1, expertCount), otherBits / max(1, otherCount))
    }

    public struct Point: Codable, Sendable {
        public var sequences: Int
        public var jindou: Double
        public var jindouOverlap: Double
        public var jindouMTP: Double
        public var llamaCpp: Double
        public var llamaCppMTP: Double
    }

    public struct Projection: Codable, Sendable {
        public var model: String
        public var machine: Machine
        public var modelBytes: Double
        public var fits: Bool
        public var points: [Point]
        /// What bounds Jindou's batch-1 step: the largest of coordinator, workers, network.
        public var batchOneBound: String
    }

    /// MTP drafts one token a step; DeepSeek-V3's report gives 85–90 % acceptance of it.
    public static let mtpAcceptance = 0.85

    public static func project(_ weights: Weights, on machine: Machine, sequences: [Int], wireBytesPerValue: Double = 2,
                               rpcRoundTripsPerHost: Double) -> Projection {
        let w = Double(machine.hosts), bw = machine.memoryBytesPerSecond, flops = machine.flopsPerSecond
        let layers = Double(weights.moeLayers)
        let otherBytes = weights.otherParameters * weights.otherBitsPerWeight / 8
        let expertBytes = weights.expertParameters * weights.expertBitsPerWeight / 8
        let e = Double(weights.experts), k = Double(weights.expertsPerToken)
        func touched(_ tokens: Double, share: Double) -> Double { share * (1 - pow(1 - k / e, tokens)) }
        // Linear forms for LatencyModel: coordinator c0 + c1·B, worker w0 + w1·B (per MoE layer),
        // the touched-expert term linearised between B = 1 and B.
        func model(tokens: Double) -> LatencyModel {
            let perWorkerExperts = e / w
            let workerTime = { (b: Double) in
                touched(b, share: perWorkerExperts) * expertBytes / bw + 2 * b * k / w * weights.expertParameters / flops
            }
            let w1 = tokens > 1 ? (workerTime(tokens) - workerTime(1)) / (tokens - 1) : 0
            let reach = 1 - pow(1 - 1 / w, k)
            return LatencyModel(moeLayers: weights.moeLayers, roundTripSeconds: machine.roundTripSeconds,
                                bytesPerSecond: machine.linkBitsPerSecond / 8,
                                bytesPerTokenPerLayer: 2 * Double(weights.hiddenSize) * wireBytesPerValue * reach,
                                coordinatorFixedSeconds: otherBytes / bw, coordinatorPerTokenSeconds: 2 * weights.otherParameters / flops,
                                workerFixedSeconds: workerTime(1) - w1, workerPerTokenSeconds: w1)
        }
        // The layer split: hosts in turn, each with 1/W of every kind of weight.
        func llamaStep(_ b: Double) -> Double {
            let perHost = otherBytes / w / bw + 2 * b * weights.otherParameters / w / flops
                + layers / w * (touched(b, share: e) * expertBytes / bw + 2 * b * k * weights.expertParameters / flops)
            let activations = b * Double(weights.hiddenSize) * 4 / (machine.linkBitsPerSecond / 8)
            return w * (perHost + rpcRoundTripsPerHost * machine.roundTripSeconds + activations)
        }
        var points: [Point] = []
        for s in sequences {
            let b = Double(s)
            let m = model(tokens: max(b * 2, 2))
            let mtpTokens = 1 + mtpAcceptance
            points.append(Point(
                sequences: s, jindou: m.decodeTokensPerSecond(sequences: s),
                jindouOverlap: s >= 2 ? m.decodeTokensPerSecond(sequences: s, microBatches: 2) : m.decodeTokensPerSecond(sequences: s),
                jindouMTP: m.decodeTokensPerSecond(sequences: s, drafts: 1, tokensPerStep: mtpTokens),
                llamaCpp: b / llamaStep(b), llamaCppMTP: b * mtpTokens / llamaStep(2 * b)))
        }
        let one = model(tokens: 2)
        let bounds = [("the coordinator's memory bandwidth (non-expert weights)", one.coordinatorSeconds(tokens: 1)),
                      ("the workers' memory bandwidth (touched experts)", layers * one.workerSeconds(tokens: 1)),
                      ("round trips (one per MoE layer)", layers * one.roundTripSeconds),
                      ("link bandwidth", layers * one.bytesPerTokenPerLayer / one.bytesPerSecond)]
        let bound = bounds.max { $0.1 < $1.1 }!
        return Projection(model: weights.name, machine: machine, modelBytes: weights.totalBytes,
                          fits: weights.totalBytes < machine.memoryBytesPerHost * w * 0.9, points: points,
                          batchOneBound: String(format: "%@ (%.1f of %.1f ms)", bound.0, bound.1 * 1e3, one.stepSeconds(tokens: 1) * 1e3))
    }
}

extension ClusterProjection.Projection {
    public static func markdown(_ projections: [ClusterProjection.Projection], rpcRoundTripsPerHost: Double, source: String) -> String {
        var lines = [
            "Inputs: parameter counts from each model's config.json; bits per weight from \(source);",
            "llama.cpp RPC round trips per host and step: \(String(format: "%.1f", rpcRoundTripsPerHost)) (as `bench network` measured);",
            "MTP: one draft per step accepted \(Int(ClusterProjection.mtpAcceptance * 100)) % of the time (DeepSeek-V3's report; Jindou runs it with `--speculative mtp`). DeepSeek-V3 ships its MTP layer; Qwen3-235B-A22B ships none, so its + MTP columns are what a draft of that acceptance would give.",
            "Decode tokens/s of all sequences together.",
            "",
            "| model | hosts × memory | link, RTT | model GB | sequences | Jindou | + overlap | + MTP | llama.cpp RPC | + MTP | Jindou ÷ llama.cpp | batch-1 bound |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for p in projections {
            for (i, point) in p.points.enumerated() {
                let m = p.machine
                lines.append("| \(i == 0 ? p.model : "") | \(i == 0 ? "\(m.hosts) × \(Int(m.memoryBytesPerHost / 1e9)) GB, \(Int(m.memoryBytesPerSecond / 1e9)) GB/s" : "")"
                    + " | \(i == 0 ? "\(Int(m.linkBitsPerSecond / 1e9)) GbE, \(Int(m.roundTripSeconds * 1e6)) µs" : "")"
                    + " | \(i == 0 ? String(format: "%.0f%@", p.modelBytes / 1e9, p.fits ? "" : " (does not fit)") : "")"
                    + String(format: " | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f× |", point.sequences, point.jindou, point.jindouOverlap,
                             point.jindouMTP, point.llamaCpp, point.llamaCppMTP, max(point.jindou, point.jindouOverlap) / point.llamaCpp)
                    + " \(i == 0 ? p.batchOneBound : "") |")
            }
        }
        return lines.joined(separator: "\n")
    }
}
