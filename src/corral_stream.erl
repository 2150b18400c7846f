%% @doc Lazy, demand-driven streams over a child's output.
%%
%% A stream owns one port (see {@link corral:open/3}). Output is acknowledged
%% to the driver only when the consumer asks for the next element, so at most
%% one credit window (`window', 1 MiB by default) of output is in memory,
%% however much the child writes: the rest waits in the child's pipe.
%%
%% Pull one element at a time with {@link open/3}, {@link next/1} and
%% {@link close/1}, or fold over the whole run with {@link fold/5}. Elements:
%%
%% <ul>
%% <li>`Bin': a chunk of stdout (or of stdout and stderr merged, with
%%     `{stderr, redirect}'), as the child wrote it; with `{lines, true}', a
%%     line instead (see below);</li>
%% <li>`{stdout, Bin}' and `{stderr, Bin}' instead, with `{stderr, consume}';</li>
%% <li>`{error, Errno}' (e.g. `{error, epipe}'): the child closed its stdin
%%     while input was still pending. The rest of the input is dropped, the
%%     output goes on. `{ignore_epipe, true}' leaves `epipe' out;</li>
%% <li>last, exactly once: `{exit, Status}', where `Status' is the exit status,
%%     128 + N for death by signal N (as in a shell and in `corral:cmd/3'), or
%%     `{error, Reason}' when the child was lost (e.g. the spawner died).</li>
%% </ul>
%%
%% Options: everything {@link corral:open/3} takes, plus
%% <ul>
%% <li>`input': a binary, iodata, or a fun of one argument, `Sink', run in a
%%     helper process. The fun writes with `Sink(IoData)', which returns `ok',
%%     `{error, epipe}' once the child closed its stdin (`ok' with
%%     `ignore_epipe'), or `{error, closed}' once the child is gone. Writes
%%     suspend the helper while the driver's stdin queue is full. stdin is
%%     closed when the fun returns. Without `input', stdin is closed at once;</li>
%% <li>`stderr': absent or `pipe': stderr is copied to the VM's standard_error,
%%     like `corral:cmd/3' with `pipe'; `consume': tagged elements; `redirect'
%%     (or `stdout', or `{stderr_to_stdout, true}'): merged into stdout;
%%     `discard' (or `null'): dropped by the OS; `inherit': the VM's fd 2;</li>
%% <li>`ignore_epipe': boolean, default `false';</li>
%% <li>`lines': boolean, default `false'. Elements are lines, split by
%%     {@link corral_lines}: each with its trailing `"\n"' (the last one
%%     may lack it), whatever the chunks; a line whose text exceeds
%%     `max_line_length' bytes (default 65536) comes in pieces of that
%%     size. With `{stderr, consume}' each stream is split on its own.
%%     Bytes are acknowledged as lines are consumed, so the window still
%%     bounds the output held, plus at most one partial line per stream.</li>
%% </ul>
%%
%% What can go wrong: a consumer that stops asking for elements without
%% calling {@link close/1} leaves the child blocked on a full pipe until the
%% consumer exits (its port is linked to it, so the child is stopped then).
%% {@link close/1} waits until the child's whole process group is gone, which
%% takes up to `kill_timeout' ms for a child that ignores its stop signal.
%% Input that raises in the helper is re-raised in the consumer.
-module(corral_stream).

-export([prepare/3, open/1, open/3, next/1, close/1, fold/5, os_pid/1]).

-export_type([spec/0, stream/0, element/0, status/0]).

-record(spec, {normalized :: corral_opts:normalized()}).

-record(stream, {
    port :: port(),
    feeder :: corral_feed:feeder(),
    stderr :: corral_opts:stderr(),
    ignore_epipe :: boolean(),
    %% Line mode: a splitter per stream, and the lines split but not yet
    %% handed out, oldest first.
    lines = false :: false | #{stdout := corral_lines:state(), stderr := corral_lines:state()},
    ready = [] :: [element()],
    %% Bytes received and not acknowledged yet.
    owed = 0 :: non_neg_integer(),
    %% Bytes of the element last handed out, acknowledged on the next pull.
    pending = 0 :: non_neg_integer(),
    %% The exit element, held back until the last lines are out.
    exit = undefined :: undefined | element(),
    done = false :: boolean()
}).

-opaque spec() :: #spec{}.
-opaque stream() :: #stream{}.
-type status() :: corral:status().
-type element() ::
    binary()
    | {stdout | stderr, binary()}
    | {error, atom()}
    | {exit, status()}.

%%% ------------------------------------------------------------------------
%%% API

%% @doc Validates a command and its options without starting anything.
%% The result can be opened any number of times with {@link open/1}.
-spec prepare(iodata() | atom(), [iodata() | atom()], corral_opts:options()) ->
    {ok, spec()} | {error, term()}.
prepare(Cmd, Args, Opts) ->
    case corral_opts:normalize(Cmd, Args, Opts, stream) of
        {ok, N} -> {ok, #spec{normalized = N}};
        Error -> Error
    end.

%% @doc Starts `Cmd' for streaming; the caller owns the stream.
-spec open(iodata() | atom(), [iodata() | atom()], corral_opts:options()) ->
    {ok, stream()} | {error, term()}.
open(Cmd, Args, Opts) ->
    case prepare(Cmd, Args, Opts) of
        {ok, Spec} -> open(Spec);
        Error -> Error
    end.

%% @doc Starts a prepared command; the caller owns the stream.
-spec open(spec()) -> {ok, stream()} | {error, term()}.
open(#spec{normalized = N}) ->
    case corral:open_normalized(N) of
        {ok, Port} ->
            Ignore = maps:get(ignore_epipe, N),
            Lines =
                case maps:get(lines, N) of
                    false -> false;
                    Max -> #{stdout => corral_lines:new(Max), stderr => corral_lines:new(Max)}
                end,
            {ok, #stream{
                port = Port,
                feeder = corral_feed:start(Port, maps:get(input, N), Ignore),
                stderr = maps:get(stderr, N),
                ignore_epipe = Ignore,
                lines = Lines
            }};
        Error ->
            Error
    end.

%% @doc Returns the next element, waiting for the child as long as it takes,
%% or `eof' after the `{exit, Status}' element. Acknowledges the previous
%% element's bytes first: that is what lets the child write more.
-spec next(stream()) -> {element(), stream()} | eof.
next(#stream{done = true}) ->
    eof;
next(#stream{ready = [Element | Ready], owed = Owed, pending = Pending} = S) ->
    %% A line's bytes may have been acknowledged already, while the rest of
    %% it was awaited: never more than is owed.
    Ack = min(Owed, Pending),
    _ = Ack > 0 andalso corral:ack(S#stream.port, Ack),
    {Element, S#stream{ready = Ready, owed = Owed - Ack, pending = elem_size(Element)}};
next(#stream{exit = {exit, _} = Exit} = S) ->
    {Exit, S#stream{exit = undefined, done = true}};
next(#stream{port = Port, feeder = Feeder, owed = Owed} = S0) ->
    %% Nothing is held for the consumer any more but partial lines: the
    %% driver gets all its credit back before we wait for more.
    _ = Owed > 0 andalso corral:ack(Port, Owed),
    S = S0#stream{owed = 0, pending = 0},
    {FRef, FMon} = corral_feed:refs(Feeder),
    receive
        {Port, {data, stdout, Bin}} ->
            next(take(stdout, Bin, S));
        {Port, {data, stderr, Bin}} when S#stream.stderr =:= capture ->
            next(take(stderr, Bin, S));
        {Port, {data, stderr, Bin}} ->
            io:put_chars(standard_error, Bin),
            next(S#stream{owed = byte_size(Bin)});
        {Port, {stdin_error, Errno}} ->
            corral_feed:stdin_error(Feeder, Errno),
            case Errno =:= epipe andalso S#stream.ignore_epipe of
                true -> next(S);
                false -> {{error, Errno}, S}
            end;
        {Port, {started, _}} ->
            next(S);
        {FRef, input_failed, Class, Reason, Stack} ->
            close_owned(S),
            erlang:raise(Class, Reason, Stack);
        {'DOWN', FMon, process, _, _} ->
            next(S#stream{feeder = corral_feed:down(Feeder)});
        {Port, Terminal} ->
            corral:flush_exit(Port),
            corral_feed:finish(Feeder),
            next(S#stream{ready = flush_lines(S), exit = {exit, corral:status(Terminal)}})
    end.

%% @doc Stops the child, if it still runs, and waits until its whole process
%% group is gone (the stop signal, then SIGKILL after `kill_timeout'). Output
%% in flight is dropped. Idempotent.
%%
%% Only the stream's owner (the process that opened it) may close it: any
%% other process gets `{error, not_owner}', and nothing is stopped (as
%% {@link corral:stop/2}).
-spec close(stream()) -> ok | {error, not_owner}.
close(#stream{done = true}) ->
    ok;
close(#stream{port = Port} = S) ->
    Self = self(),
    case erlang:port_info(Port, connected) of
        {connected, Owner} when Owner =/= Self -> {error, not_owner};
        %% Ours, or closed already: what is left of it is the caller's.
        _ -> close_owned(S)
    end.

close_owned(#stream{port = Port, owed = Owed} = S) ->
    corral_feed:stop(S#stream.feeder),
    %% The driver must get its credit back to read the pipe to EOF.
    _ = Owed > 0 andalso corral:ack(Port, Owed),
    _ =
        case erlang:port_info(Port, id) of
            undefined -> ok;
            _ -> corral:stop(Port, infinity)
        end,
    flush_port(Port),
    ok.

%% @doc Runs `Cmd' and folds `Fun' over its elements, except the final
%% `{exit, Status}'. `Fun(Element, Acc)' returns `{cont, Acc1}' or
%% `{halt, Acc1}'; halting stops the child at once.
%%
%% Returns `{Acc, Status}' with `Status' as in `{exit, Status}', or `halted'
%% when `Fun' halted; `{error, Reason}' when the child could not be started
%% or was lost.
-spec fold(
    iodata() | atom(),
    [iodata() | atom()],
    corral_opts:options(),
    fun((element(), Acc) -> {cont, Acc} | {halt, Acc}),
    Acc
) -> {Acc, non_neg_integer() | halted} | {error, term()}.
fold(Cmd, Args, Opts, Fun, Acc0) ->
    case open(Cmd, Args, Opts) of
        {ok, S} ->
            try
                fold_loop(S, Fun, Acc0)
            after
                close_owned(S)
            end;
        Error ->
            Error
    end.

%% @doc The child's OS pid (also its process group id), while it runs.
-spec os_pid(stream()) -> {ok, pos_integer()} | {error, closed}.
os_pid(#stream{port = Port}) -> corral:os_pid(Port).

%%% ------------------------------------------------------------------------
%%% Internals

fold_loop(S0, Fun, Acc) ->
    case next(S0) of
        {{exit, {error, Reason}}, _} ->
            {error, Reason};
        {{exit, Status}, _} ->
            {Acc, Status};
        {Element, S} ->
            case Fun(Element, Acc) of
                {cont, Acc1} ->
                    fold_loop(S, Fun, Acc1);
                {halt, Acc1} ->
                    close_owned(S),
                    {Acc1, halted};
                Other ->
                    close_owned(S),
                    erlang:error({bad_return, Other})
            end
    end.

%% A chunk of output becomes the elements it completes. Its bytes are owed
%% to the driver until the consumer has taken them.
take(Stream, Bin, #stream{lines = false, owed = Owed} = S) ->
    S#stream{ready = [tag(Stream, Bin, S)], owed = Owed + byte_size(Bin)};
take(Stream, Bin, #stream{lines = Splitters, owed = Owed} = S) ->
    {Lines, Splitter} = corral_lines:feed(Bin, maps:get(Stream, Splitters)),
    S#stream{
        ready = [tag(Stream, L, S) || L <- Lines],
        lines = Splitters#{Stream := Splitter},
        owed = Owed + byte_size(Bin)
    }.

tag(Stream, Bin, #stream{stderr = capture}) -> {Stream, Bin};
tag(_, Bin, _) -> Bin.

%% The partial last lines at EOF, stdout's first.
flush_lines(#stream{lines = false}) ->
    [];
flush_lines(#stream{lines = #{stdout := Out, stderr := Err}} = S) ->
    {OutLines, _} = corral_lines:flush(Out),
    {ErrLines, _} = corral_lines:flush(Err),
    [tag(stdout, L, S) || L <- OutLines] ++ [tag(stderr, L, S) || L <- ErrLines].

elem_size({_, Bin}) -> byte_size(Bin);
elem_size(Bin) -> byte_size(Bin).

flush_port(Port) ->
    receive
        {Port, _} -> flush_port(Port)
    after 0 -> corral:flush_exit(Port)
    end.
