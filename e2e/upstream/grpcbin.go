package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// The gRPC stand-in's own services, defined as descriptors in Go (no protoc):
//
//	package hello;   service HelloService { rpc SayHello(HelloRequest) returns (HelloResponse); }
//	package grpcbin; service GRPCBin { rpc Empty(EmptyMessage) returns (EmptyMessage);
//	                                   rpc Index(EmptyMessage) returns (IndexReply);
//	                                   rpc DummyUnary(DummyMessage) returns (DummyMessage); }
//
// The names follow the real grpcbin, so `grpcurl ... list` looks familiar.
// Methods of the stand-in, as `grpcurl list` prints the services.
const (
	HelloService   = "hello.HelloService"
	GRPCBinService = "grpcbin.GRPCBin"
)

func field(name string, num int32, typ descriptorpb.FieldDescriptorProto_Type, repeated bool, typeName string) *descriptorpb.FieldDescriptorProto {
	label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
	if repeated {
		label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
	}
	f := &descriptorpb.FieldDescriptorProto{
		Name:     proto.String(name),
		Number:   proto.Int32(num),
		Type:     typ.Enum(),
		Label:    label.Enum(),
		JsonName: proto.String(jsonName(name)),
	}
	if typeName != "" {
		f.TypeName = proto.String(typeName)
	}
	return f
}

func jsonName(s string) string {
	out := make([]byte, 0, len(s))
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			upper = true
			continue
		}
		if upper && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		upper = false
		out = append(out, c)
	}
	return string(out)
}

func method(name, in, out string) *descriptorpb.MethodDescriptorProto {
	return &descriptorpb.MethodDescriptorProto{Name: proto.String(name), InputType: proto.String(in), OutputType: proto.String(out)}
}

var (
	tString = descriptorpb.FieldDescriptorProto_TYPE_STRING
	tInt32  = descriptorpb.FieldDescriptorProto_TYPE_INT32
	tBool   = descriptorpb.FieldDescriptorProto_TYPE_BOOL
	tMsg    = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
)

func msg(name string, fields ...*descriptorpb.FieldDescriptorProto) *descriptorpb.DescriptorProto {
	return &descriptorpb.DescriptorProto{Name: proto.String(name), Field: fields}
}

// standinFiles builds the descriptor registry of the stand-in's services.
func standinFiles() (*protoregistry.Files, error) {
	hello := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("meshext/standin/hello.proto"),
		Package: proto.String("hello"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			msg("HelloRequest", field("greeting", 1, tString, false, "")),
			msg("HelloResponse", field("reply", 1, tString, false, "")),
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name:   proto.String("HelloService"),
			Method: []*descriptorpb.MethodDescriptorProto{method("SayHello", ".hello.HelloRequest", ".hello.HelloResponse")},
		}},
	}
	endpoint := msg("Endpoint", field("path", 1, tString, false, ""), field("description", 2, tString, false, ""))
	index := msg("IndexReply", field("description", 1, tString, false, ""), field("endpoints", 2, tMsg, true, ".grpcbin.IndexReply.Endpoint"))
	index.NestedType = []*descriptorpb.DescriptorProto{endpoint}
	grpcbin := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("meshext/standin/grpcbin.proto"),
		Package: proto.String("grpcbin"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			msg("EmptyMessage"),
			index,
			msg("DummyMessage",
				field("f_string", 1, tString, false, ""),
				field("f_strings", 2, tString, true, ""),
				field("f_int32", 3, tInt32, false, ""),
				field("f_bool", 4, tBool, false, "")),
		},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: proto.String("GRPCBin"),
			Method: []*descriptorpb.MethodDescriptorProto{
				method("Empty", ".grpcbin.EmptyMessage", ".grpcbin.EmptyMessage"),
				method("Index", ".grpcbin.EmptyMessage", ".grpcbin.IndexReply"),
				method("DummyUnary", ".grpcbin.DummyMessage", ".grpcbin.DummyMessage"),
			},
		}},
	}
	return protodesc.NewFiles(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{hello, grpcbin}})
}

// resolvers tries each resolver in turn: our own files first, then the
// global registry (health, reflection).
type resolvers []protodesc.Resolver

func (rs resolvers) FindFileByPath(p string) (protoreflect.FileDescriptor, error) {
	for _, r := range rs {
		if fd, err := r.FindFileByPath(p); err == nil {
			return fd, nil
		}
	}
	return nil, protoregistry.NotFound
}

func (rs resolvers) FindDescriptorByName(n protoreflect.FullName) (protoreflect.Descriptor, error) {
	for _, r := range rs {
		if d, err := r.FindDescriptorByName(n); err == nil {
			return d, nil
		}
	}
	return nil, protoregistry.NotFound
}

// unary makes a grpc.MethodDesc whose request and response are dynamic
// messages of the given descriptors.
func unary(name string, in, out protoreflect.MessageDescriptor, fn func(req, resp *dynamicpb.Message)) grpc.MethodDesc {
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			req := dynamicpb.NewMessage(in)
			if err := dec(req); err != nil {
				return nil, err
			}
			call := func(ctx context.Context, r any) (any, error) {
				resp := dynamicpb.NewMessage(out)
				fn(r.(*dynamicpb.Message), resp)
				return resp, nil
			}
			if icpt == nil {
				return call(ctx, req)
			}
			return icpt(ctx, req, &grpc.UnaryServerInfo{Server: srv, FullMethod: name}, call)
		},
	}
}

func lookupMsg(files *protoregistry.Files, name protoreflect.FullName) protoreflect.MessageDescriptor {
	d, err := files.FindDescriptorByName(name)
	if err != nil {
		panic(fmt.Sprintf("upstream: descriptor %s: %v", name, err)) // our own static descriptors: a bug
	}
	return d.(protoreflect.MessageDescriptor)
}

// NewGRPCBinServer returns a grpc.Server with the stand-in services, the
// standard health service (reporting SERVING) and server reflection (v1 and
// v1alpha, for any grpcurl version).
func NewGRPCBinServer(opts ...grpc.ServerOption) (*grpc.Server, error) {
	files, err := standinFiles()
	if err != nil {
		return nil, fmt.Errorf("upstream: grpc descriptors: %w", err)
	}
	s := grpc.NewServer(opts...)
	helloReq, helloResp := lookupMsg(files, "hello.HelloRequest"), lookupMsg(files, "hello.HelloResponse")
	empty, index, dummy := lookupMsg(files, "grpcbin.EmptyMessage"), lookupMsg(files, "grpcbin.IndexReply"), lookupMsg(files, "grpcbin.DummyMessage")

	// HandlerType *any: there is no generated interface to check against.
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: HelloService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{unary("SayHello", helloReq, helloResp, func(req, resp *dynamicpb.Message) {
			g := req.Get(helloReq.Fields().ByName("greeting")).String()
			if g == "" {
				g = "world"
			}
			resp.Set(helloResp.Fields().ByName("reply"), protoreflect.ValueOfString("hello "+g))
		})},
		Metadata: "meshext/standin/hello.proto",
	}, struct{}{})

	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: GRPCBinService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			unary("Empty", empty, empty, func(_, _ *dynamicpb.Message) {}),
			unary("Index", empty, index, func(_, resp *dynamicpb.Message) {
				resp.Set(index.Fields().ByName("description"), protoreflect.ValueOfString("gRPC Request & Response Service (meshext loopback stand-in for grpcbin.test.k6.io)"))
				list := resp.Mutable(index.Fields().ByName("endpoints")).List()
				ep := index.Messages().ByName("Endpoint")
				for _, m := range [][2]string{
					{"/" + HelloService + "/SayHello", "replies hello <greeting>"},
					{"/" + GRPCBinService + "/DummyUnary", "echoes the message"},
					{"/" + GRPCBinService + "/Empty", "returns an empty message"},
				} {
					e := dynamicpb.NewMessage(ep)
					e.Set(ep.Fields().ByName("path"), protoreflect.ValueOfString(m[0]))
					e.Set(ep.Fields().ByName("description"), protoreflect.ValueOfString(m[1]))
					list.Append(protoreflect.ValueOfMessage(e))
				}
			}),
			unary("DummyUnary", dummy, dummy, func(req, resp *dynamicpb.Message) {
				proto.Merge(resp, req)
			}),
		},
		Metadata: "meshext/standin/grpcbin.proto",
	}, struct{}{})

	healthpb.RegisterHealthServer(s, health.NewServer()) // "" and unknown services: SERVING by default

	ropts := reflection.ServerOptions{Services: s, DescriptorResolver: resolvers{files, protoregistry.GlobalFiles}}
	reflectionv1.RegisterServerReflectionServer(s, reflection.NewServerV1(ropts))
	reflectionv1alpha.RegisterServerReflectionServer(s, reflection.NewServer(ropts))
	return s, nil
}

// StartGRPCBin serves NewGRPCBinServer: h2c with prior knowledge in
// plaintext (9000 style) or over TLS (9001 style).
//
// TLS is terminated by our own listener instead of grpc credentials because
// grpc-go refuses TLS clients that offer no ALPN, and an Envoy cluster
// without an ALPN list offers none; the real grpcbin accepts them. Clients
// offering "h2" still get it.
func StartGRPCBin(opts ...Option) (*Server, error) {
	o, err := collect(opts)
	if err != nil {
		return nil, err
	}
	gs, err := NewGRPCBinServer()
	if err != nil {
		return nil, err
	}
	ln, err := listen(o)
	if err != nil {
		return nil, err
	}
	cfg := o.tlsConfig("h2")
	var serveLn net.Listener = ln
	if cfg != nil {
		serveLn = tls.NewListener(ln, cfg)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := gs.Serve(serveLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			o.logger.Warn("grpcbin serve", "addr", ln.Addr(), "err", err)
		}
	}()
	return &Server{
		kind: "grpc",
		addr: ln.Addr().String(),
		tls:  cfg != nil,
		close: func() error {
			stopped := make(chan struct{})
			go func() { gs.GracefulStop(); close(stopped) }()
			select {
			case <-stopped:
			case <-time.After(3 * time.Second):
				gs.Stop()
			}
			<-done
			return nil
		},
	}, nil
}
