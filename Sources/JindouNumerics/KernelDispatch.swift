@_exported import JindouTensors
import CJindouSupport
import Foundation
import JindouKernelsAVX2
import JindouKernelsAVX512
import JindouKernelsAVX512VNNI
import JindouKernelsAVXVNNI
import JindouKernelsGeneric

// Runtime CPU dispatch: the kernels are compiled once per instruction set (Package.swift),
// and the best copy the running CPU supports is chosen once per process. JINDOU_KERNELS
// (generic | avx2 | avxvnni | avx512 | avx512vnni) forces one — for comparisons and
// benchmarks; a copy the CPU cannot run is refused with a warning and the best supported
// one used instead.

public enum KernelDispatch {
    /// Every compiled copy, most capable first.
    public static let all: [any KernelSet.Type] = [
        JindouKernelsAVX512VNNI.Kernels.self, JindouKernelsAVX512.Kernels.self, JindouKernelsAVXVNNI.Kernels.self,
        JindouKernelsAVX2.Kernels.self, JindouKernelsGeneric.Kernels.self,
    ]

    /// The copies this CPU can run, most capable first.
    public static let supported: [any KernelSet.Type] = {
        let sets = jindou_cpu_kernel_sets()
        return all.filter { required(for: $0.name).map { sets & $0 != 0 } ?? true }
    }()

    /// The CPU feature bit (`jindou_cpu_kernel_sets`) a copy needs; nil for the generic one.
    static func required(for name: String) -> Int32? {
        switch name {
        case "avx512vnni": JINDOU_KERNELS_AVX512VNNI
        case "avx512": JINDOU_KERNELS_AVX512
        case "avxvnni": JINDOU_KERNELS_AVXVNNI
        case "avx2": JINDOU_KERNELS_AVX2
        default: nil
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
