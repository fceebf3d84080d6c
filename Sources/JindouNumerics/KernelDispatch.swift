@_exported import JindouTensors
import CJindouSupport
import Foundation
import JindouKernelsAVX2
import JindouKernelsAVX512
import JindouKernelsGeneric

// Runtime CPU dispatch: the kernels are compiled once per instruction set (Package.swift),
// and the best copy the running CPU supports is chosen once per process. JINDOU_KERNELS
// (generic | avx2 | avx512) forces one — for comparisons and benchmarks; a copy the CPU
// cannot run is refused with a warning and the best supported one used instead.

public enum KernelDispatch {
    /// Every compiled copy, most capable first.
    public static let all: [any KernelSet.Type] = [
        JindouKernelsAVX512.Kernels.self, JindouKernelsAVX2.Kernels.self, JindouKernelsGeneric.Kernels.self,
    ]

    /// The copies this CPU can run, most capable first.
    public static let supported: [any KernelSet.Type] = {
        let level = Int(jindou_cpu_vector_level())
        return all.filter { required(for: $0.name) <= level }
    }()

    /// The instruction-set level a copy needs (as `jindou_cpu_vector_level` counts).
    static func required(for name: String) -> Int {
        switch name {
        case "avx512": 2
        case "avx2": 1
        default: 0
        }
    }

    /// The copy in use: JINDOU_KERNELS if set and supported, otherwise the most capable
    /// supported one.
    public static let active: any KernelSet.Type = {
        let best = supported[0]
        guard let requested = ProcessInfo.processInfo.environment["JINDOU_KERNELS"], !requested.isEmpty else { return best }
        guard let chosen = all.first(where: { $0.name == requested }) else {
            warn("JINDOU_KERNELS=\(requested) is not a kernel set (one of: \(all.map { $0.name }.joined(separator: ", "))); using \(best.name)")
            return best
        }
        guard supported.contains(where: { $0.name == chosen.name }) else {
            warn("JINDOU_KERNELS=\(requested): this CPU lacks the instructions those kernels need; using \(best.name)")
            return best
        }
        return chosen
    }()

    private static func warn(_ message: String) {
        FileHandle.standardError.write(Data("jindou: warning: \(message)\n".utf8))
    }
}

/// The kernels `linear`, `attendOneToken` and the others call.
var kernels: any KernelSet.Type { KernelDispatch.active }
