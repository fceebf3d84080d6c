import Foundation

/// How far a quantised model's next-token distributions are from a reference's on the
/// same prompts: KL(reference ‖ candidate) of the softmax at every prompt position, and
/// how often both pick the same top token.
public struct QuantizationAccuracy: Sendable, Codable, Equatable {
    public var positions: Int
    public var meanKL: Double
    public var maxKL: Double
    /// Fraction of positions where the argmax agrees.
    public var top1Agreement: Double

    public static func measure(reference: InferenceEngine, candidate: InferenceEngine, prompts: [[Int]]) async throws -> QuantizationAccuracy {
        var positions = 0, agree = 0
        var sumKL = 0.0, maxKL = 0.0
        for prompt in prompts {
            let p = try await reference.promptLogits(prompt)
            let q = try await candidate.promptLogits(prompt)
            for (a, b) in zip(p, q) {
                let kl = Self.divergence(a, b)
                sumKL += kl
                maxKL = max(maxKL, kl)
                if argmax(a) == argmax(b) { agree += 1 }
                positions += 1
            }
        }
        return QuantizationAccuracy(positions: positions, meanKL: positions > 0 ? sumKL / Double(positions) : 0, maxKL: maxKL,
                                    top1Agreement: positions > 0 ? Double(agree) / Double(positions) : 1)
    }

    /// KL(softmax(a) ‖ softmax(b)) in nats, in double precision.
    static func divergence(_ a: [Float], _ b: [Float]) -> Double {
        func logSoftmax(_ x: [Float]) -> [Double] {
            let m = Double(x.max() ?? 0)
            let log = Foundation.log(x.reduce(0.0) { $0 + exp(Double($1) - m) }) + m
            return x.map { Double($0) - log }
        }
        let lp = logSoftmax(a), lq = logSoftmax(b)
        return zip(lp, lq).reduce(0.0) { $0 + exp($1.0) * ($1.0 - $1.1) }
    }

    static func argmax(_ x: [Float]) -> Int { x.indices.max { x[$0] < x[$1] } ?? 0 }
}
