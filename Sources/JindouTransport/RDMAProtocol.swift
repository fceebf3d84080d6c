import CJindouRDMA
import Foundation
import JindouWire

/// Failures of the RDMA transport, each naming what is missing or wrong.
public enum RDMAError: Error, Equatable, CustomStringConvertible {
    /// No usable device: `--transport rdma` refuses to start.
    case noDevice(reason: String)
    case deviceNotFound(name: String, available: [String])
    /// A verbs call failed while setting up the link.
    case setup(message: String)
    /// The peer's connection parameters cannot be used.
    case badParameters(reason: String)
    /// A work request completed with an error status (libibverbs' text).
    case completion(status: Int32, operation: String)
    /// Posting a work request failed.
    case post(operation: String, code: Int32)
    case closed

    public var description: String {
        switch self {
        case .noDevice(let reason):
            "no RDMA device: \(reason); install a driver (InfiniBand/RoCE NIC, or SoftRoCE: `modprobe rdma_rxe && rdma link add rxe0 type rxe netdev eth0`) or use --transport tcp"
        case .deviceNotFound(let name, let available):
            "RDMA device \(name) not found (devices: \(available.isEmpty ? "none" : available.joined(separator: ", ")))"
        case .setup(let message): "RDMA set-up failed: \(message)"
        case .badParameters(let reason): "unusable RDMA connection parameters from the peer: \(reason)"
        case .completion(let status, let operation):
            "RDMA \(operation) failed: \(String(cString: jindou_rdma_status_string(status))) (status \(status))"
        case .post(let operation, let code): "posting an RDMA \(operation) failed: \(String(cString: strerror(code)))"
        case .closed: "the RDMA link was closed"
        }
    }
}

/// The RDMA devices on this host (libibverbs), for `--transport rdma|auto`.
public enum RDMADevices {
    public struct Device: Sendable, Equatable {
        public let name: String
        /// First active port, nil if none.
        public let port: Int?
        public let linkLayer: String

        public init(name: String, port: Int?, linkLayer: String) {
            self.name = name
            self.port = port
            self.linkLayer = linkLayer
        }
    }

    /// Every device libibverbs lists (none on machines without an RDMA driver).
    public static func list() -> [Device] {
        var raw = [jindou_rdma_device](repeating: jindou_rdma_device(), count: 32)
        let count = Int(jindou_rdma_list_devices(&raw, Int32(raw.count)))
        guard count > 0 else { return [] }
        return raw.prefix(min(count, raw.count)).map { device in
            var copy = device
            let name = withUnsafeBytes(of: &copy.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return Device(name: name, port: device.port == 0 ? nil : Int(device.port),
                          linkLayer: device.link_layer == 1 ? "InfiniBand" : device.link_layer == 2 ? "Ethernet" : "unknown")
        }
    }

    /// The device `--transport rdma` would use, or the reason there is none.
    public static func require(named name: String? = nil, devices: [Device] = list()) throws(RDMAError) -> Device {
        if let name {
            guard let device = devices.first(where: { $0.name == name }) else {
                throw .deviceNotFound(name: name, available: devices.map(\.name))
            }
            guard device.port != nil else { throw .noDevice(reason: "device \(name) has no active port") }
            return device
        }
        guard !devices.isEmpty else {
            let sysfs = FileManager.default.fileExists(atPath: "/sys/class/infiniband")
                ? "/sys/class/infiniband lists none" : "/sys/class/infiniband does not exist: no RDMA driver is loaded"
            throw .noDevice(reason: "libibverbs finds no device (\(sysfs))")
        }
        guard let active = devices.first(where: { $0.port != nil }) else {
            throw .noDevice(reason: "no port is active on \(devices.map(\.name).joined(separator: ", "))")
        }
        return active
    }
}

/// How one side's registered memory is divided: `sendSlots` then `receiveSlots` slots of
/// `slotBytes` each. A frame stream is cut into slot-sized SENDs; each receive slot holds
/// one arriving SEND.
public struct RDMABufferLayout: Sendable, Equatable {
    public static let defaultSlotBytes = 1 << 20
    public static let defaultSendSlots = 8
    public static let defaultReceiveSlots = 16
    public static let slotAlignment = 64
    public static let slotBytesRange = 4096...(16 << 20)
    public static let slotCountRange = 4...1024
    /// Registered bytes per link at most (slots × size).
    public static let maximumBytes = 1 << 30

    public let slotBytes: Int
    public let sendSlots: Int
    public let receiveSlots: Int

    /// The defaults (1 MiB slots, 8 to send, 16 to receive: 24 MiB registered per link end).
    public static let standard = try! RDMABufferLayout()

    public init(slotBytes: Int = defaultSlotBytes, sendSlots: Int = defaultSendSlots,
                receiveSlots: Int = defaultReceiveSlots) throws(RDMAError) {
        guard Self.slotBytesRange.contains(slotBytes), slotBytes % Self.slotAlignment == 0 else {
            throw .badParameters(reason: "slot size \(slotBytes) B is not a multiple of \(Self.slotAlignment) in \(Self.slotBytesRange.lowerBound)…\(Self.slotBytesRange.upperBound)")
        }
        guard Self.slotCountRange.contains(sendSlots), Self.slotCountRange.contains(receiveSlots) else {
            throw .badParameters(reason: "\(sendSlots) send and \(receiveSlots) receive slots: each must be in \(Self.slotCountRange.lowerBound)…\(Self.slotCountRange.upperBound)")
        }
        guard (sendSlots + receiveSlots) * slotBytes <= Self.maximumBytes else {
            throw .badParameters(reason: "\((sendSlots + receiveSlots) * slotBytes) B of slots exceed \(Self.maximumBytes) B")
        }
        self.slotBytes = slotBytes
        self.sendSlots = sendSlots
        self.receiveSlots = receiveSlots
    }

    public var totalBytes: Int { (sendSlots + receiveSlots) * slotBytes }
    public func sendOffset(_ slot: Int) -> Int { slot * slotBytes }
    public func receiveOffset(_ slot: Int) -> Int { (sendSlots + slot) * slotBytes }

    /// Work-request ids: sends are 0..<sendSlots (plus credit-only sends above them),
    /// receives are tagged so a completion names its slot either way.
    public static let receiveTag: UInt64 = 1 << 32
    public static let creditTag: UInt64 = 1 << 33
    public func receiveID(_ slot: Int) -> UInt64 { Self.receiveTag | UInt64(slot) }

    /// The SENDs a run of `count` bytes takes: consecutive ranges of at most one slot.
    public func chunks(of count: Int) -> [Range<Int>] {
        stride(from: 0, to: count, by: slotBytes).map { $0..<min($0 + slotBytes, count) }
    }
}

/// Credit-based flow control over RC SEND/RECV, so a SEND always finds a posted receive
/// (RNR retries stay a safety net). A side may post one data SEND per credit; the peer
/// returns credits, as the immediate value of its own SENDs, once it has reposted the
/// receive slots they used. One credit is always kept back for a credit-only SEND
/// (length 0), so two sides that both wait to send can always tell each other about
/// freed slots: each has received the other's data, so each has credits to return.
public struct RDMACreditWindow: Sendable, Equatable {
    /// SENDs this side may still post (the peer's free receive slots as last known).
    public private(set) var credits: Int
    /// Receive slots this side has reposted and not yet reported to the peer.
    public private(set) var unreported: Int = 0
    /// Report freed slots without waiting for data to carry them from this many on.
    public let reportThreshold: Int
    /// The peer's receive slots: credits can never exceed them.
    public let peerReceiveSlots: Int

    public init(peerReceiveSlots: Int, ownReceiveSlots: Int) {
        self.peerReceiveSlots = peerReceiveSlots
        credits = peerReceiveSlots
        reportThreshold = max(1, ownReceiveSlots / 2)
    }

    /// Whether a data SEND may be posted now (one credit stays in reserve).
    public var canSendData: Bool { credits > 1 }

    /// Takes a credit for a data SEND; returns the immediate value it carries (the freed
    /// slots not yet reported).
    public mutating func takeForData() -> UInt32 {
        precondition(canSendData, "a data SEND needs two credits (one is the reserve)")
        credits -= 1
        defer { unreported = 0 }
        return UInt32(unreported)
    }

    /// A receive slot was consumed and reposted.
    public mutating func reposted() { unreported += 1 }

    /// The peer returned credits (the immediate value of a SEND it made). A peer that
    /// returns more slots than it has is broken.
    public mutating func returned(_ count: UInt32) throws(RDMAError) {
        guard Int(count) <= peerReceiveSlots - credits else {
            throw .badParameters(reason: "the peer returned \(count) credits with \(credits) of its \(peerReceiveSlots) receive slots already free")
        }
        credits += Int(count)
    }

    /// A credit-only SEND to post now, if one is due: its immediate value, with the credit
    /// it uses taken (the reserve may be used for it).
    public mutating func creditUpdateDue() -> UInt32? {
        guard unreported >= reportThreshold, credits >= 1 else { return nil }
        credits -= 1
        defer { unreported = 0 }
        return UInt32(unreported)
    }
}

/// What each side sends the other to connect its queue pair (RDMA_CONNECT / RDMA_ACCEPT),
/// validated before any of it reaches a verbs call.
public struct RDMAConnectionParameters: Sendable, Equatable {
    public var gid: [UInt8]
    public var queuePair: UInt32
    public var packetSequence: UInt32
    public var lid: UInt16
    /// enum ibv_mtu: 1 (256 B) … 5 (4096 B).
    public var mtu: UInt8
    public var slotBytes: Int
    public var receiveSlots: Int

    public init(gid: [UInt8], queuePair: UInt32, packetSequence: UInt32, lid: UInt16, mtu: UInt8, slotBytes: Int, receiveSlots: Int) {
        self.gid = gid
        self.queuePair = queuePair
        self.packetSequence = packetSequence
        self.lid = lid
        self.mtu = mtu
        self.slotBytes = slotBytes
        self.receiveSlots = receiveSlots
    }

    public func validate() throws(RDMAError) {
        guard gid.count == 16 else { throw .badParameters(reason: "GID of \(gid.count) bytes (16 expected)") }
        guard queuePair != 0, queuePair <= 0xFF_FFFF else { throw .badParameters(reason: "queue pair number \(queuePair) is not in 1…2^24-1") }
        guard packetSequence <= 0xFF_FFFF else { throw .badParameters(reason: "packet sequence number \(packetSequence) exceeds 24 bits") }
        guard (1...5).contains(mtu) else { throw .badParameters(reason: "MTU code \(mtu) is not 1 (256 B) … 5 (4096 B)") }
        guard gid.contains(where: { $0 != 0 }) || lid != 0 else { throw .badParameters(reason: "neither a GID nor a LID to reach the peer") }
        _ = try RDMABufferLayout(slotBytes: slotBytes, sendSlots: RDMABufferLayout.slotCountRange.lowerBound, receiveSlots: receiveSlots)
    }

    init(address: jindou_rdma_address, slotBytes: Int, receiveSlots: Int) {
        var copy = address
        gid = withUnsafeBytes(of: &copy.gid) { Array($0) }
        queuePair = address.qp_num
        packetSequence = address.psn
        lid = address.lid
        mtu = address.mtu
        self.slotBytes = slotBytes
        self.receiveSlots = receiveSlots
    }

    var address: jindou_rdma_address {
        var address = jindou_rdma_address()
        withUnsafeMutableBytes(of: &address.gid) { $0.copyBytes(from: gid.prefix(16)) }
        address.qp_num = queuePair
        address.psn = packetSequence
        address.lid = lid
        address.mtu = mtu
        return address
    }

    /// An RDMA_CONNECT (coordinator → worker) or RDMA_ACCEPT (answer) frame.
    public func frame(_ kind: MessageKind, requestID: UInt64) -> Frame {
        var header = FrameHeader()
        header.kind = kind
        header.requestID = requestID
        var body = Jindou_V1_RdmaConnect()
        body.gid = Data(gid)
        body.queuePair = queuePair
        body.packetSequence = packetSequence
        body.lid = UInt32(lid)
        body.mtu = UInt32(mtu)
        body.slotBytes = UInt64(slotBytes)
        body.receiveSlots = UInt32(receiveSlots)
        header.rdma = body
        return Frame(header: header)
    }

    /// Reads and validates the parameters of an RDMA_CONNECT or RDMA_ACCEPT.
    public init(frame: Frame, kind: MessageKind) throws(RDMAError) {
        guard frame.kind == kind, case .rdma(let body)? = frame.header.body else {
            throw .badParameters(reason: "expected \(kind) with connection parameters, got \(frame.kind)")
        }
        guard body.lid <= UInt32(UInt16.max), body.mtu <= 255, body.slotBytes <= UInt64(Int.max) else {
            throw .badParameters(reason: "LID \(body.lid), MTU \(body.mtu) or slot size \(body.slotBytes) out of range")
        }
        self.init(gid: Array(body.gid), queuePair: body.queuePair, packetSequence: body.packetSequence, lid: UInt16(body.lid),
                  mtu: UInt8(body.mtu), slotBytes: Int(body.slotBytes), receiveSlots: Int(body.receiveSlots))
        try validate()
    }
}
