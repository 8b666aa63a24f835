internal import CRabbitMQ
import Foundation

// Everything that converts between Swift values and librabbitmq's C structures lives here and in
// ConnectionWorker.swift; no C type appears in the module's public API.

/// Owns the C memory of one call's arguments (strings, tables, properties) and frees it when released.
///
/// - Important: Only used on the connection's thread, within one call; pointers it hands out are valid until
///   ``release()``.
final class CArguments {
    private var allocations: [UnsafeMutableRawPointer] = []

    func bytes(_ string: String) -> amqp_bytes_t {
        var utf8 = string.utf8CString  // NUL-terminated; the NUL is not part of the length
        return utf8.withUnsafeMutableBytes { raw in copy(UnsafeRawBufferPointer(rebasing: raw.dropLast())) }
    }

    func bytes(_ array: [UInt8]) -> amqp_bytes_t {
        array.withUnsafeBytes { copy($0) }
    }

    private func copy(_ raw: UnsafeRawBufferPointer) -> amqp_bytes_t {
        guard raw.count > 0, let base = raw.baseAddress else { return amqp_bytes_t(len: 0, bytes: nil) }
        let memory = malloc(raw.count)!
        memory.copyMemory(from: base, byteCount: raw.count)
        allocations.append(memory)
        return amqp_bytes_t(len: raw.count, bytes: memory)
    }

    func table(_ table: AMQPTable) -> amqp_table_t {
        guard !table.isEmpty else { return amqp_empty_table }
        let entries = UnsafeMutablePointer<amqp_table_entry_t>.allocate(capacity: table.count)
        allocations.append(UnsafeMutableRawPointer(entries))
        for (index, (key, value)) in table.sorted(by: { $0.key < $1.key }).enumerated() {
            (entries + index).initialize(to: amqp_table_entry_t(key: bytes(key), value: fieldValue(value)))
        }
        return amqp_table_t(num_entries: Int32(table.count), entries: entries)
    }

    func fieldValue(_ value: AMQPValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .bool(let b):
            field.kind = kind(AMQP_FIELD_KIND_BOOLEAN)
            field.value.boolean = b ? 1 : 0
        case .int(let i):
            field.kind = kind(AMQP_FIELD_KIND_I64)
            field.value.i64 = i
        case .double(let d):
            field.kind = kind(AMQP_FIELD_KIND_F64)
            field.value.f64 = d
        case .string(let s):
            field.kind = kind(AMQP_FIELD_KIND_UTF8)
            field.value.bytes = bytes(s)
        case .bytes(let b):
            field.kind = kind(AMQP_FIELD_KIND_BYTES)
            field.value.bytes = bytes(b)
        case .timestamp(let t):
            field.kind = kind(AMQP_FIELD_KIND_TIMESTAMP)
            field.value.u64 = t
        case .array(let values):
            field.kind = kind(AMQP_FIELD_KIND_ARRAY)
            let entries = UnsafeMutablePointer<amqp_field_value_t>.allocate(capacity: max(values.count, 1))
            allocations.append(UnsafeMutableRawPointer(entries))
            for (index, element) in values.enumerated() { (entries + index).initialize(to: fieldValue(element)) }
            field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: entries)
        case .table(let nested):
            field.kind = kind(AMQP_FIELD_KIND_TABLE)
            field.value.table = table(nested)
        case .void:
            field.kind = kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }

    /// The C properties of a message; `publishTag`, when given, is added as a header so a returned mandatory
    /// message can be matched to its publish.
    func properties(_ p: AMQPProperties, publishTag: UInt64?) -> amqp_basic_properties_t {
        var c = amqp_basic_properties_t()
        var flags: amqp_flags_t = cta_flag_delivery_mode
        c.delivery_mode = p.persistent ? 2 : 1
        if let v = p.contentType { flags |= cta_flag_content_type; c.content_type = bytes(v) }
        if let v = p.contentEncoding { flags |= cta_flag_content_encoding; c.content_encoding = bytes(v) }
        var headers = p.headers
        if let publishTag { headers[publishTagHeader] = .int(Int64(publishTag)) }
        if !headers.isEmpty { flags |= cta_flag_headers; c.headers = table(headers) }
        if let v = p.priority { flags |= cta_flag_priority; c.priority = v }
        if let v = p.correlationID { flags |= cta_flag_correlation_id; c.correlation_id = bytes(v) }
        if let v = p.replyTo { flags |= cta_flag_reply_to; c.reply_to = bytes(v) }
        if let v = p.expiration { flags |= cta_flag_expiration; c.expiration = bytes(v) }
        if let v = p.messageID { flags |= cta_flag_message_id; c.message_id = bytes(v) }
        if let v = p.timestamp { flags |= cta_flag_timestamp; c.timestamp = v }
        if let v = p.type { flags |= cta_flag_type; c.type = bytes(v) }
        if let v = p.appID { flags |= cta_flag_app_id; c.app_id = bytes(v) }
        c._flags = flags
        return c
    }

    func release() {
        for allocation in allocations { free(allocation) }
        allocations.removeAll()
    }

    deinit { release() }
}

/// Header a mandatory publish carries so that a `basic.return` can be matched to it.
let publishTagHeader = "x-cta-publish-tag"

@inline(__always)
func kind(_ k: amqp_field_value_kind_t) -> UInt8 { UInt8(truncatingIfNeeded: k.rawValue) }

extension String {
    init(amqp bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(amqp bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }
}

func swiftTable(_ table: amqp_table_t) -> AMQPTable {
    var result: AMQPTable = [:]
    guard table.num_entries > 0, let entries = table.entries else { return result }
    for index in 0..<Int(table.num_entries) {
        let entry = entries[index]
        result[String(amqp: entry.key)] = swiftValue(entry.value)
    }
    return result
}

func swiftValue(_ field: amqp_field_value_t) -> AMQPValue {
    switch UInt32(field.kind) {
    case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
    case AMQP_FIELD_KIND_I8.rawValue: return .int(Int64(field.value.i8))
    case AMQP_FIELD_KIND_U8.rawValue: return .int(Int64(field.value.u8))
    case AMQP_FIELD_KIND_I16.rawValue: return .int(Int64(field.value.i16))
    case AMQP_FIELD_KIND_U16.rawValue: return .int(Int64(field.value.u16))
    case AMQP_FIELD_KIND_I32.rawValue: return .int(Int64(field.value.i32))
    case AMQP_FIELD_KIND_U32.rawValue: return .int(Int64(field.value.u32))
    case AMQP_FIELD_KIND_I64.rawValue: return .int(field.value.i64)
    case AMQP_FIELD_KIND_U64.rawValue: return .int(Int64(bitPattern: field.value.u64))
    case AMQP_FIELD_KIND_F32.rawValue: return .double(Double(field.value.f32))
    case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
    case AMQP_FIELD_KIND_UTF8.rawValue: return .string(String(amqp: field.value.bytes))
    case AMQP_FIELD_KIND_BYTES.rawValue: return .bytes([UInt8](amqp: field.value.bytes))
    case AMQP_FIELD_KIND_TIMESTAMP.rawValue: return .timestamp(field.value.u64)
    case AMQP_FIELD_KIND_TABLE.rawValue: return .table(swiftTable(field.value.table))
    case AMQP_FIELD_KIND_ARRAY.rawValue:
        let array = field.value.array
        guard array.num_entries > 0, let entries = array.entries else { return .array([]) }
        return .array((0..<Int(array.num_entries)).map { swiftValue(entries[$0]) })
    default: return .void
    }
}

func swiftProperties(_ c: amqp_basic_properties_t) -> AMQPProperties {
    let flags = c._flags
    func has(_ flag: amqp_flags_t) -> Bool { flags & flag != 0 }
    return AMQPProperties(
        contentType: has(cta_flag_content_type) ? String(amqp: c.content_type) : nil,
        contentEncoding: has(cta_flag_content_encoding) ? String(amqp: c.content_encoding) : nil,
        headers: has(cta_flag_headers) ? swiftTable(c.headers) : [:],
        persistent: has(cta_flag_delivery_mode) && c.delivery_mode == 2,
        priority: has(cta_flag_priority) ? c.priority : nil,
        correlationID: has(cta_flag_correlation_id) ? String(amqp: c.correlation_id) : nil,
        replyTo: has(cta_flag_reply_to) ? String(amqp: c.reply_to) : nil,
        expiration: has(cta_flag_expiration) ? String(amqp: c.expiration) : nil,
        messageID: has(cta_flag_message_id) ? String(amqp: c.message_id) : nil,
        timestamp: has(cta_flag_timestamp) ? c.timestamp : nil,
        type: has(cta_flag_type) ? String(amqp: c.type) : nil,
        appID: has(cta_flag_app_id) ? String(amqp: c.app_id) : nil
    )
}

extension AMQPError {
    /// The one place librabbitmq's failures become ``AMQPError``s: a status code from a call that returns `int`.
    init(status: Int32, context: String) {
        let text = String(cString: amqp_error_string2(status))
        let code: Code
        switch status {
        case AMQP_STATUS_TIMEOUT.rawValue: code = .timeout
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue, AMQP_STATUS_SOCKET_ERROR.rawValue,
            AMQP_STATUS_TCP_ERROR.rawValue, AMQP_STATUS_SOCKET_CLOSED.rawValue,
            AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue:
            code = .connectionClosed
        case AMQP_STATUS_SSL_ERROR.rawValue, AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue,
            AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue, AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue:
            code = .tls
        case AMQP_STATUS_BAD_AMQP_DATA.rawValue, AMQP_STATUS_UNEXPECTED_STATE.rawValue,
            AMQP_STATUS_WRONG_METHOD.rawValue:
            code = .protocolError
        default: code = .connectionClosed
        }
        let errnoText = errno != 0 ? String(cString: strerror(errno)) : nil
        self.init(code, text, context: context, detail: "status \(status)" + (errnoText.map { ", errno: \($0)" } ?? ""))
    }

    /// The one place an `amqp_rpc_reply_t` becomes an ``AMQPError`` (nil when the reply is normal).
    init?(reply: amqp_rpc_reply_t, context: String) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            self.init(status: reply.library_error, context: context)
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            if reply.reply.id == cta_method_connection_close, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
                let text = String(amqp: close.reply_text)
                let code: Code = close.reply_code == 403 ? .authenticationFailed : .connectionClosed
                self.init(code, "broker closed the connection: \(text)", context: context, replyCode: close.reply_code)
            } else if reply.reply.id == cta_method_channel_close, let decoded = reply.reply.decoded {
                let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
                self.init(channelClose: close, context: context)
            } else {
                self.init(.protocolError, "unexpected server method \(reply.reply.id)", context: context)
            }
        default:
            self.init(.protocolError, "no reply", context: context)
        }
    }

    init(channelClose close: amqp_channel_close_t, context: String) {
        let text = String(amqp: close.reply_text)
        let code: Code
        switch close.reply_code {
        case 404: code = .notFound
        case 406: code = .preconditionFailed
        case 403, 405: code = .accessRefused
        default: code = .channelClosed
        }
        self.init(code, "broker closed the channel: \(text)", context: context, replyCode: close.reply_code)
    }
}

/// Whether a connected TCP socket is connected to itself; see `cta_socket_is_self_connected`.
func isSelfConnected(fd: Int32) -> Bool { cta_socket_is_self_connected(fd) != 0 }
