-- A Wireshark dissector for the lab channel of mitm-lab, written from docs/protocol.md.
--
-- Frames (type, length, body), every handshake message (randoms, features, suites by name, the
-- certificate chain through Wireshark's own X.509 dissector, key shares, signatures, the Finished
-- MACs), records (nonce, ciphertext, tag, by the suite the ServerHello chose) and alerts. A
-- conversation is recognised by its first bytes, a ClientHello; "Decode As... MITMLAB" works too.
--
-- Install: copy this file into Wireshark's personal plugins folder (Help > About > Folders), or run
--   tshark -X lua_script:wireshark/mitmlab.lua -r run.pcapng

local mitmlab = Proto("mitmlab", "mitm-lab channel")

local FRAME_TYPES = { [21] = "alert", [22] = "handshake", [23] = "application" }
local MESSAGES = {
    [1] = "ClientHello", [2] = "ServerHello", [12] = "ServerKeyExchange",
    [16] = "ClientKeyExchange", [20] = "Finished",
}
local KEY_EXCHANGES = { [1] = "RSA", [2] = "ECDHE" }
local RECORDS = {
    [1] = "NULL", [2] = "NULL_HMAC_SHA256", [3] = "AES128_CTR",
    [4] = "AES128_CTR_HMAC_SHA256", [5] = "AES128_GCM",
}
-- Each record protection's nonce and tag sizes, in bytes (docs/protocol.md, "Records").
local LAYOUT = {
    [1] = { nonce = 0, tag = 0 }, [2] = { nonce = 0, tag = 32 }, [3] = { nonce = 16, tag = 0 },
    [4] = { nonce = 16, tag = 32 }, [5] = { nonce = 12, tag = 16 },
}
local MAX_BODY = 18432

local SUITES = {}
for kx, kx_name in pairs(KEY_EXCHANGES) do
    for record, record_name in pairs(RECORDS) do
        SUITES[kx * 256 + record] = kx_name .. "_" .. record_name
    end
end

local f = {
    frame_type = ProtoField.uint8("mitmlab.frame.type", "Frame type", base.DEC, FRAME_TYPES),
    frame_length = ProtoField.uint16("mitmlab.frame.length", "Body length", base.DEC),
    message = ProtoField.uint8("mitmlab.handshake.type", "Handshake message", base.DEC, MESSAGES),
    client_random = ProtoField.bytes("mitmlab.handshake.client_random", "Client random"),
    server_random = ProtoField.bytes("mitmlab.handshake.server_random", "Server random"),
    features = ProtoField.uint8("mitmlab.handshake.features", "Record-layer features", base.HEX),
    sequence_numbers = ProtoField.bool("mitmlab.handshake.features.sequence_numbers",
        "sequence_numbers", 8, nil, 0x01),
    per_direction_keys = ProtoField.bool("mitmlab.handshake.features.per_direction_keys",
        "per_direction_keys", 8, nil, 0x02),
    suites_length = ProtoField.uint16("mitmlab.handshake.suites_length", "Suites length", base.DEC),
    suite = ProtoField.uint16("mitmlab.handshake.suite", "Offered suite", base.HEX, SUITES),
    chosen = ProtoField.uint16("mitmlab.handshake.chosen_suite", "Chosen suite", base.HEX, SUITES),
    chain_length = ProtoField.uint16("mitmlab.handshake.chain_length", "Chain length", base.DEC),
    certificate = ProtoField.bytes("mitmlab.handshake.certificate", "Certificate (DER)"),
    share = ProtoField.bytes("mitmlab.handshake.share", "X25519 share"),
    signature = ProtoField.bytes("mitmlab.handshake.signature", "RSA-PSS signature"),
    exchange = ProtoField.bytes("mitmlab.handshake.exchange", "Key exchange"),
    key_confirmation = ProtoField.bytes("mitmlab.handshake.key_confirmation", "Key confirmation"),
    transcript_mac = ProtoField.bytes("mitmlab.handshake.transcript_mac", "Transcript MAC"),
    protection = ProtoField.string("mitmlab.record.protection", "Record protection"),
    nonce = ProtoField.bytes("mitmlab.record.nonce", "Nonce"),
    ciphertext = ProtoField.bytes("mitmlab.record.ciphertext", "Ciphertext"),
    plaintext = ProtoField.string("mitmlab.record.plaintext", "Plaintext"),
    tag = ProtoField.bytes("mitmlab.record.tag", "Tag (MAC)"),
    alert_protection = ProtoField.string("mitmlab.alert.protection", "Refused by"),
    alert_step = ProtoField.string("mitmlab.alert.step", "Step"),
    alert_message = ProtoField.string("mitmlab.alert.message", "Message"),
}
mitmlab.fields = f

local malformed = ProtoExpert.new("mitmlab.malformed", "Malformed lab-channel frame",
    expert.group.MALFORMED, expert.severity.ERROR)
mitmlab.experts = { malformed }

local tcp_stream = Field.new("tcp.stream")
local chosen_suites = {} -- tcp.stream -> the suite its ServerHello chose

local certificate_dissector = nil
pcall(function() certificate_dissector = DissectorTable.get("ber.syntax"):get_dissector("Certificate") end)

local function vec(tvb, offset, size)
    -- A length-prefixed field: its length and the range of its bytes (nil when cut short).
    if offset + size > tvb:len() then return nil end
    local length = tvb(offset, size):uint()
    if offset + size + length > tvb:len() then return nil end
    return length, (length > 0) and tvb(offset + size, length) or nil
end

local function handshake(body, pinfo, tree, stream)
    local kind = body(0, 1):uint()
    tree:add(f.message, body(0, 1))
    local name = MESSAGES[kind] or ("unknown message " .. kind)
    local n = body:len()
    if kind == 1 and n >= 36 then
        tree:add(f.client_random, body(1, 32))
        local features = tree:add(f.features, body(33, 1))
        features:add(f.sequence_numbers, body(33, 1))
        features:add(f.per_direction_keys, body(33, 1))
        local length = vec(body, 34, 2)
        if length then
            tree:add(f.suites_length, body(34, 2))
            local offered = {}
            for i = 0, length / 2 - 1 do
                local code = body(36 + 2 * i, 2):uint()
                tree:add(f.suite, body(36 + 2 * i, 2))
                offered[#offered + 1] = SUITES[code] or string.format("0x%04x", code)
            end
            name = name .. " (" .. table.concat(offered, ", ") .. ")"
        end
    elseif kind == 2 and n >= 37 then
        tree:add(f.server_random, body(1, 32))
        local code = body(33, 2):uint()
        tree:add(f.chosen, body(33, 2))
        chosen_suites[stream] = code
        name = name .. " (" .. (SUITES[code] or string.format("0x%04x", code)) .. ")"
        local chain = vec(body, 35, 2)
        if chain then
            local chain_tree = tree:add(f.chain_length, body(35, 2))
            local offset = 37
            while offset + 2 <= 37 + chain do
                local length, der = vec(body, offset, 2)
                if not der then break end
                local item = chain_tree:add(f.certificate, der)
                if certificate_dissector then
                    pcall(function() certificate_dissector:call(der:tvb(), pinfo, item) end)
                end
                offset = offset + 2 + length
            end
        end
    elseif kind == 12 and n >= 35 then
        tree:add(f.share, body(1, 32))
        local _, signature = vec(body, 33, 2)
        if signature then tree:add(f.signature, signature) end
    elseif kind == 16 then
        local _, exchange = vec(body, 1, 2)
        if exchange then tree:add(f.exchange, exchange) end
    elseif kind == 20 and n >= 34 then
        tree:add(f.key_confirmation, body(1, 32))
        local _, mac = vec(body, 33, 1)
        if mac then tree:add(f.transcript_mac, mac) end
    else
        tree:add_proto_expert_info(malformed, "a handshake message cut short, or of an unknown type")
    end
    return name
end

local function record(body, tree, stream)
    local suite = chosen_suites[stream]
    local protection = suite and (suite % 256)
    local layout = protection and LAYOUT[protection]
    if not layout then
        tree:add(f.ciphertext, body)
        return "Record (no ServerHello seen)"
    end
    tree:add(f.protection, RECORDS[protection])
    local n = body:len()
    if n < layout.nonce + layout.tag then
        tree:add_proto_expert_info(malformed, "a record shorter than its protection allows")
        return "Record (too short)"
    end
    if layout.nonce > 0 then tree:add(f.nonce, body(0, layout.nonce)) end
    local middle = n - layout.nonce - layout.tag
    if middle > 0 then
        local part = body(layout.nonce, middle)
        if protection <= 2 then tree:add(f.plaintext, part) else tree:add(f.ciphertext, part) end
    end
    if layout.tag > 0 then tree:add(f.tag, body(n - layout.tag, layout.tag)) end
    return "Record"
end

local function alert(body, tree)
    local p_len, p, s_len, s, m_len, m
    p_len, p = vec(body, 0, 1)
    if p_len then s_len, s = vec(body, 1 + p_len, 1) end
    if s_len then m_len, m = vec(body, 2 + p_len + s_len, 2) end
    if not m_len then
        tree:add_proto_expert_info(malformed, "an alert body cut short")
        return "Alert (malformed)"
    end
    local by = p and p:string() or ""
    if p then tree:add(f.alert_protection, p) end
    if s then tree:add(f.alert_step, s) end
    if m then tree:add(f.alert_message, m) end
    return "Alert: " .. (by ~= "" and ("refused by " .. by) or "protocol error")
        .. (s and (" at " .. s:string()) or "")
end

function mitmlab.dissector(tvb, pinfo, tree)
    local offset, said = 0, {}
    local stream = tostring(tcp_stream() or "?")
    while offset < tvb:len() do
        local left = tvb:len() - offset
        if left < 3 then
            pinfo.desegment_offset, pinfo.desegment_len = offset, DESEGMENT_ONE_MORE_SEGMENT
            break
        end
        local kind, length = tvb(offset, 1):uint(), tvb(offset + 1, 2):uint()
        if not FRAME_TYPES[kind] or length > MAX_BODY then
            local bad = tree:add(mitmlab, tvb(offset))
            bad:add_proto_expert_info(malformed, "not a lab-channel frame (type " .. kind .. ", length "
                .. length .. ")")
            said[#said + 1] = "Malformed"
            break
        end
        if left < 3 + length then
            pinfo.desegment_offset, pinfo.desegment_len = offset, 3 + length - left
            break
        end
        local item = tree:add(mitmlab, tvb(offset, 3 + length))
        item:add(f.frame_type, tvb(offset, 1))
        item:add(f.frame_length, tvb(offset + 1, 2))
        local body = length > 0 and tvb(offset + 3, length) or nil
        local name
        if kind == 22 and body then
            name = handshake(body, pinfo, item, stream)
        elseif kind == 23 and body then
            name = record(body, item, stream)
        elseif kind == 21 and body then
            name = alert(body, item)
        else
            name = "Empty " .. FRAME_TYPES[kind]
        end
        item:append_text(": " .. name)
        said[#said + 1] = name
        offset = offset + 3 + length
    end
    pinfo.cols.protocol = "MITMLAB"
    if #said > 0 then pinfo.cols.info = table.concat(said, ", ") end
    return offset
end

local function looks_like_a_client_hello(tvb)
    if tvb:len() < 4 or tvb(0, 1):uint() ~= 22 or tvb(3, 1):uint() ~= 1 then return false end
    local length = tvb(1, 2):uint()
    return length >= 38 and length % 2 == 0 and length <= 36 + 2 * 64
end

local function heuristic(tvb, pinfo, tree)
    if not looks_like_a_client_hello(tvb) then return false end
    pinfo.conversation = mitmlab
    mitmlab.dissector(tvb, pinfo, tree)
    return true
end

mitmlab:register_heuristic("tcp", heuristic)
DissectorTable.get("tcp.port"):add_for_decode_as(mitmlab)
