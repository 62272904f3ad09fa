// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// meshext transparent redirect: cgroup eBPF programs that send a workload's
// TCP connections to VIPs (242.0.0.0/8 by default) to the local Envoy's
// transparent listener, keep the original destination readable with
// getsockopt(SOL_IP, SO_ORIGINAL_DST), and redirect its DNS (UDP/53).
//
// App side (workload cgroup): connect4, connect6 (v4-mapped only),
// sendmsg4, recvmsg4, getpeername4/6, sockops (active), sock_release.
// Proxy side (Envoy's cgroup): sockops (passive), getsockopt.
//
// Original destination flow: connect4 stores cookie -> orig; the client's
// ACTIVE_ESTABLISHED copies it to the 4-tuple; the accepted socket's
// PASSIVE_ESTABLISHED moves it into its sk_storage and deletes the tuple
// entry (a tuple entry left behind would hand a stale destination to a later
// unrelated connection reusing the same client port); getsockopt answers
// from sk_storage only.
//
// Byte order: bpf_sock_addr.user_ip4/user_port network order; sock_ops
// local_port host order, remote_port network order in the upper 16 bits;
// bpf_sock.src_port host order, dst_port network order.

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOL_IP 0
#define SO_ORIGINAL_DST 80
#define DNS_PORT 53

char __license[] SEC("license") = "Dual BSD/GPL";

// A VIP range as an LPM trie key; addr in network order.
struct vip_key {
	__u32 prefixlen;
	__u32 addr;
};

// Where connections to a VIP range go (Envoy's transparent listener).
// ip4 network order, port network order.
struct proxy_target {
	__u32 ip4;
	__u16 port;
	__u16 _pad;
};

// Runtime configuration; one element. ip/port in network order.
struct config {
	__u32 dns_ip4;
	__u16 dns_port;
	__u16 _pad;
	__u32 flags;
	__u32 bypass_mark;
	__u32 bypass_uid;
};

#define CFG_DNS_ENABLED (1 << 0)
#define CFG_BYPASS_MARK (1 << 1)
#define CFG_BYPASS_UID (1 << 2)

// An original destination; ip4 and port in network order.
struct orig_dst {
	__u32 ip4;
	__u16 port;
	__u16 proto;
};

// Client 4-tuple, as seen from the client; addrs network order, ports host order.
struct tuple_key {
	__u32 client_ip4;
	__u32 proxy_ip4;
	__u16 client_port;
	__u16 proxy_port;
};

// What cookie_orig holds per client socket: the original destination and,
// once connected, its 4-tuple (so sock_release can delete the bridge entry).
struct cookie_val {
	struct orig_dst orig;
	struct tuple_key tuple;
};

enum stat_index {
	STAT_TCP_REDIRECT = 0,
	STAT_TCP_V4MAPPED,
	STAT_SOCKOPS_TUPLE,
	STAT_PASSIVE_MOVED,
	STAT_GETSOCKOPT_HIT,
	STAT_DNS_REDIRECT,
	STAT_DNS_REPLY_RESTORED,
	STAT_BYPASS,
	STAT_MAP_ERR,
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct vip_key);
	__type(value, struct proxy_target);
} vip_cidrs SEC(".maps");

// Per-workload listener: cgroup id (exact) -> proxy target. Lets one
// attachment on a parent cgroup send each child cgroup's workload to its own
// Envoy listener; without an entry the VIP range's target is used.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, struct proxy_target);
} cgroup_proxy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config_map SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct cookie_val);
} cookie_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct tuple_key);
	__type(value, struct orig_dst);
} tuple_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct orig_dst);
} sk_orig SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &idx);
	if (v)
		*v += 1; // per-CPU slot: no atomics needed
}

static __always_inline struct config *get_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&config_map, &zero);
}

// bypassed reports whether this socket belongs to traffic that must never be
// redirected: a configured SO_MARK on the socket or the proxy's uid.
static __always_inline int bypassed(struct bpf_sock_addr *ctx, struct config *cfg)
{
	if (cfg->flags & CFG_BYPASS_MARK) {
		struct bpf_sock *sk = ctx->sk;
		if (sk && sk->mark == cfg->bypass_mark) {
			count(STAT_BYPASS);
			return 1;
		}
	}
	if (cfg->flags & CFG_BYPASS_UID) {
		__u32 uid = (__u32)bpf_get_current_uid_gid();
		if (uid == cfg->bypass_uid) {
			count(STAT_BYPASS);
			return 1;
		}
	}
	return 0;
}

static __always_inline int remember(void *ctx, __u32 ip4, __u16 port, __u16 proto)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct cookie_val v = {.orig = {.ip4 = ip4, .port = port, .proto = proto}};
	if (bpf_map_update_elem(&cookie_orig, &cookie, &v, BPF_ANY)) {
		count(STAT_MAP_ERR);
		return -1;
	}
	return 0;
}

// proxy_for returns where a connection to ip4 goes, or NULL when ip4 is not
// a VIP: the calling cgroup's own listener if it has one, else the range's.
static __always_inline struct proxy_target *proxy_for(__u32 ip4)
{
	struct vip_key key = {.prefixlen = 32, .addr = ip4};
	struct proxy_target *t = bpf_map_lookup_elem(&vip_cidrs, &key);
	if (!t)
		return 0;
	__u64 cg = bpf_get_current_cgroup_id();
	struct proxy_target *own = bpf_map_lookup_elem(&cgroup_proxy, &cg);
	return own ? own : t;
}

// DNS over TCP is remembered with this marker instead of IPPROTO_TCP, so the
// sockops/getsockopt bridge (meant for Envoy) ignores it.
#define PROTO_DNS_TCP (IPPROTO_TCP | 0x100)

// redirect_dns rewrites a port-53 destination to the DNS target (which
// serves UDP and TCP on the same address).
static __always_inline void redirect_dns(struct bpf_sock_addr *ctx, struct config *cfg, __u16 proto)
{
	if (!(cfg->flags & CFG_DNS_ENABLED))
		return;
	if (ctx->user_port != bpf_htons(DNS_PORT))
		return;
	if (ctx->user_ip4 == cfg->dns_ip4 && (__u16)ctx->user_port == cfg->dns_port)
		return;
	if (remember(ctx, ctx->user_ip4, (__u16)ctx->user_port, proto))
		return;
	ctx->user_ip4 = cfg->dns_ip4;
	ctx->user_port = cfg->dns_port;
	count(STAT_DNS_REDIRECT);
}

SEC("cgroup/connect4")
int meshext_connect4(struct bpf_sock_addr *ctx)
{
	struct config *cfg = get_config();
	if (!cfg || bypassed(ctx, cfg))
		return 1;

	if (ctx->protocol == IPPROTO_UDP) {
		redirect_dns(ctx, cfg, IPPROTO_UDP);
		return 1;
	}
	if (ctx->protocol != IPPROTO_TCP)
		return 1;

	struct proxy_target *t = proxy_for(ctx->user_ip4);
	if (!t) {
		// Resolvers fall back to TCP for truncated answers.
		redirect_dns(ctx, cfg, PROTO_DNS_TCP);
		return 1;
	}
	if (remember(ctx, ctx->user_ip4, (__u16)ctx->user_port, IPPROTO_TCP))
		return 1;
	ctx->user_ip4 = t->ip4;
	ctx->user_port = t->port;
	count(STAT_TCP_REDIRECT);
	return 1;
}

// connect6 handles only IPv4-mapped VIPs (::ffff:242.x.y.z): dual-stack
// sockets connecting to them never run connect4.
SEC("cgroup/connect6")
int meshext_connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return 1;
	if (ctx->user_ip6[0] != 0 || ctx->user_ip6[1] != 0 ||
	    ctx->user_ip6[2] != bpf_htonl(0x0000ffff))
		return 1;
	struct config *cfg = get_config();
	if (!cfg || bypassed(ctx, cfg))
		return 1;

	__u32 ip4 = ctx->user_ip6[3];
	struct proxy_target *t = proxy_for(ip4);
	if (!t)
		return 1;
	if (remember(ctx, ip4, (__u16)ctx->user_port, IPPROTO_TCP))
		return 1;
	ctx->user_ip6[3] = t->ip4;
	ctx->user_port = t->port;
	count(STAT_TCP_V4MAPPED);
	return 1;
}

// sendmsg4 redirects unconnected UDP DNS queries (sendto to port 53).
SEC("cgroup/sendmsg4")
int meshext_sendmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	struct config *cfg = get_config();
	if (!cfg || bypassed(ctx, cfg))
		return 1;
	redirect_dns(ctx, cfg, IPPROTO_UDP);
	return 1;
}

// recvmsg4 makes a DNS reply appear to come from the server the app asked:
// resolvers drop answers from an unexpected source.
SEC("cgroup/recvmsg4")
int meshext_recvmsg4(struct bpf_sock_addr *ctx)
{
	if (ctx->protocol != IPPROTO_UDP)
		return 1;
	struct config *cfg = get_config();
	if (!cfg || !(cfg->flags & CFG_DNS_ENABLED))
		return 1;
	if (ctx->user_ip4 != cfg->dns_ip4 || (__u16)ctx->user_port != cfg->dns_port)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct cookie_val *v = bpf_map_lookup_elem(&cookie_orig, &cookie);
	if (!v || v->orig.proto != IPPROTO_UDP)
		return 1;
	ctx->user_ip4 = v->orig.ip4;
	ctx->user_port = v->orig.port;
	count(STAT_DNS_REPLY_RESTORED);
	return 1;
}

// getpeername4/6 report the VIP (not the proxy) as the peer of a redirected socket.
SEC("cgroup/getpeername4")
int meshext_getpeername4(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct cookie_val *v = bpf_map_lookup_elem(&cookie_orig, &cookie);
	if (!v)
		return 1;
	ctx->user_ip4 = v->orig.ip4;
	ctx->user_port = v->orig.port;
	return 1;
}

SEC("cgroup/getpeername6")
int meshext_getpeername6(struct bpf_sock_addr *ctx)
{
	__u64 cookie = bpf_get_socket_cookie(ctx);
	struct cookie_val *v = bpf_map_lookup_elem(&cookie_orig, &cookie);
	if (!v)
		return 1;
	ctx->user_ip6[0] = 0;
	ctx->user_ip6[1] = 0;
	ctx->user_ip6[2] = bpf_htonl(0x0000ffff);
	ctx->user_ip6[3] = v->orig.ip4;
	ctx->user_port = v->orig.port;
	return 1;
}

// sockops_active (app side): the client's connection to the proxy is
// established; publish its original destination under the client 4-tuple so
// the proxy side can find it.
SEC("sockops")
int meshext_sockops_active(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB)
		return 1;
	__u64 cookie = bpf_get_socket_cookie(skops);
	struct cookie_val *v = bpf_map_lookup_elem(&cookie_orig, &cookie);
	if (!v || v->orig.proto != IPPROTO_TCP)
		return 1;
	struct tuple_key key = {
		.client_ip4 = skops->local_ip4,
		.proxy_ip4 = skops->remote_ip4,
		.client_port = (__u16)skops->local_port,
		.proxy_port = bpf_ntohs((__u16)(skops->remote_port >> 16)),
	};
	struct orig_dst copy = v->orig;
	if (bpf_map_update_elem(&tuple_orig, &key, &copy, BPF_ANY)) {
		count(STAT_MAP_ERR);
		return 1;
	}
	v->tuple = key;
	count(STAT_SOCKOPS_TUPLE);
	return 1;
}

// sockops_passive (proxy side): the proxy accepted a connection; move the
// original destination from the 4-tuple bridge into the accepted socket's
// own storage and delete the bridge entry.
SEC("sockops")
int meshext_sockops_passive(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	struct tuple_key key = {
		.client_ip4 = skops->remote_ip4,
		.proxy_ip4 = skops->local_ip4,
		.client_port = bpf_ntohs((__u16)(skops->remote_port >> 16)),
		.proxy_port = (__u16)skops->local_port,
	};
	struct orig_dst *o = bpf_map_lookup_elem(&tuple_orig, &key);
	if (!o)
		return 1;
	struct orig_dst copy = *o;
	bpf_map_delete_elem(&tuple_orig, &key);

	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct orig_dst *st = bpf_sk_storage_get(&sk_orig, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!st) {
		count(STAT_MAP_ERR);
		return 1;
	}
	*st = copy;
	count(STAT_PASSIVE_MOVED);
	return 1;
}

struct sockaddr_in4 {
	__u16 family;
	__u16 port;
	__u32 addr;
	__u8 zero[8];
};

// getsockopt (proxy side) answers SO_ORIGINAL_DST from the accepted socket's
// storage; every other call, and every miss, keeps the kernel's answer.
SEC("cgroup/getsockopt")
int meshext_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->level != SOL_IP || ctx->optname != SO_ORIGINAL_DST) {
		// Before 6.5 a result larger than a page is an EFAULT unless
		// the program says "use the kernel's buffer".
		if (ctx->optlen > 4096)
			ctx->optlen = 0;
		return 1;
	}
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct orig_dst *o = bpf_sk_storage_get(&sk_orig, sk, 0, 0);
	if (!o)
		return 1;
	struct sockaddr_in4 *sa = ctx->optval;
	if ((void *)(sa + 1) > ctx->optval_end)
		return 1;
	sa->family = AF_INET;
	sa->port = o->port;
	sa->addr = o->ip4;
	__builtin_memset(sa->zero, 0, sizeof(sa->zero));
	ctx->optlen = sizeof(*sa);
	// Keeps clang from fusing the two 4-byte context stores into one
	// 8-byte store, which the verifier rejects.
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	count(STAT_GETSOCKOPT_HIT);
	return 1;
}

// sock_release (app side) drops a closing socket's entries so neither the
// cookie nor the 4-tuple can outlive it.
SEC("cgroup/sock_release")
int meshext_sock_release(struct bpf_sock *sk)
{
	__u64 cookie = bpf_get_socket_cookie(sk);
	struct cookie_val *v = bpf_map_lookup_elem(&cookie_orig, &cookie);
	if (!v)
		return 1;
	struct tuple_key key = v->tuple;
	__u16 proto = v->orig.proto;
	bpf_map_delete_elem(&cookie_orig, &cookie);
	if (proto != IPPROTO_TCP || key.client_port == 0)
		return 1;
	bpf_map_delete_elem(&tuple_orig, &key);
	return 1;
}
