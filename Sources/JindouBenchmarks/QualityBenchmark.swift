import Foundation
import JindouModel

/// `jindouctl bench quality`: how far each quantised file's next-token distributions are
/// from the unquantised reference model's, on the same prompts — mean and max KL(reference
/// ‖ file) over every prompt position and how often both pick the same top token — beside
/// each file's bits per weight. The numbers docs/quantization.md gives per type come from
/// this command (not from a test).
public struct QualityBenchmark: Sendable {
    public struct Model: Sendable {
        public var name: String
        public var path: String
        public init(name: String, path: String) {
            self.name = name
            self.path = path
        }
    }

    public struct Row: Codable, Sendable {
        public var name: String
        public var path: String
        /// Every tensor's bytes × 8 ÷ weights, and the types present (most bytes first).
        public var bitsPerWeight: Double
        public var types: [String]
        public var accuracy: QuantizationAccuracy
    }

    public struct Report: Codable, Sendable {
        public var machine: String
        public var date: String
        public var reference: String
        public var prompts: Int
        public var rows: [Row]
    }

    public let reference: String
    public let models: [Model]
    public let prompts: [[Int]]

    public init(reference: String, models: [Model], prompts: [[Int]]) {
        self.reference = reference
        self.models = models
        self.prompts = prompts
    }

    public func run(progress: (String) -> Void = { _ in }) async throws -> Report {
        let base = try InferenceEngine.load(directory: reference)
        var rows: [Row] = []
        for model in models {
            let candidate = try InferenceEngine.load(directory: model.path)
            let accuracy = try await QuantizationAccuracy.measure(reference: base, candidate: candidate, prompts: prompts)
            let inspection = GGUFInspection(try GGUFFile(path: model.path))
            rows.append(Row(name: model.name, path: model.path, bitsPerWeight: inspection.bitsPerWeight,
                            types: inspection.types.map(\.type), accuracy: accuracy))
            progress(String(format: "%@: %.2f bits/weight, mean KL %.2e, top-1 %.3f", model.name, inspection.bitsPerWeight,
                            accuracy.meanKL, accuracy.top1Agreement))
        }
        return Report(machine: ClusterBenchmark.machine, date: ISO8601DateFormatter().string(from: Date()), reference: reference,
                      prompts: prompts.count, rows: rows)
    }
}

extension QualityBenchmark.Report {
    public var markdown: String {
        var lines = [
            "Reference: `\(reference)` (unquantised, computed in fp32). Run: \(date). \(prompts) prompts, "
                + "\(rows.first?.accuracy.positions ?? 0) positions: KL(reference ‖ file) of the next-token distribution at every "
                + "prompt position, in nats, and the share of positions where both pick the same token.",
            "",
            "| file | bits/weight | types (most bytes first) | mean KL | max KL | top-1 agreement |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows {
            lines.append("| \(r.name) | " + String(format: "%.2f", r.bitsPerWeight) + " | \(r.types.joined(separator: ", ")) | "
                + String(format: "%.2e | %.2e | %.3f", r.accuracy.meanKL, r.accuracy.maxKL, r.accuracy.top1Agreement) + " |")
        }
        return lines.joined(separator: "\n")
    }
}
