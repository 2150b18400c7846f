%% @doc A pure line splitter over a byte stream that arrives in chunks.
%%
%% Feed it chunks as they come ({@link feed/2}); it returns the lines that
%% are complete so far and keeps the partial last one. At end of input,
%% {@link flush/1} returns that partial line.
%%
%% A line comes back with its trailing `"\n"', as Elixir's `File.stream!/1'
%% and `IO.stream/2' line mode give it; only the last line at end of input
%% may lack it. A line whose text (without its `"\n"') is longer than
%% `MaxLineBytes' is returned in pieces of exactly `MaxLineBytes' bytes (no
%% `"\n"' added, no byte lost); what follows a piece continues as the next
%% piece or line. The maximum counts bytes as `open_port/2''s `{line, L}'
%% does, so an element is at most `MaxLineBytes + 1' bytes long and the
%% splitter holds at most `MaxLineBytes' bytes between chunks, whatever the
%% producer writes.
-module(corral_lines).

-export([new/0, new/1, feed/2, flush/1, pending_bytes/1]).

-export_type([state/0, line/0]).

-define(DEFAULT_MAX, 65536).

-record(lines, {
    max :: pos_integer(),
    %% Bytes of the current partial line; never contains "\n" and is at
    %% most `max' bytes long (whether it is cut depends on the next byte).
    partial = <<>> :: binary()
}).

-opaque state() :: #lines{}.
-type line() :: binary().

%% @doc A splitter with the default maximum line length, 65536 bytes.
-spec new() -> state().
new() -> new(?DEFAULT_MAX).

%% @doc A splitter that cuts lines longer than `MaxLineBytes' bytes.
-spec new(pos_integer()) -> state().
new(Max) when is_integer(Max), Max > 0 -> #lines{max = Max};
new(Max) -> erlang:error({badarg, {max_line_length, Max}}).

%% @doc Split a chunk: the lines it completes, in order, and the new state.
-spec feed(binary(), state()) -> {[line()], state()}.
feed(<<>>, State) ->
    {[], State};
feed(Bin, #lines{partial = <<>>} = State) when is_binary(Bin) ->
    split(Bin, State, []);
feed(Bin, #lines{partial = Partial} = State) when is_binary(Bin) ->
    split(<<Partial/binary, Bin/binary>>, State#lines{partial = <<>>}, []).

%% @doc The partial last line at end of input, if any (a list of 0 or 1
%% lines), and a state with nothing pending.
-spec flush(state()) -> {[line()], state()}.
flush(#lines{partial = <<>>} = State) -> {[], State};
flush(#lines{partial = Partial} = State) -> {[Partial], State#lines{partial = <<>>}}.

%% @doc Bytes held in the partial line (not yet returned).
-spec pending_bytes(state()) -> non_neg_integer().
pending_bytes(#lines{partial = Partial}) -> byte_size(Partial).

split(Bin, #lines{max = Max} = State, Acc) ->
    Size = byte_size(Bin),
    %% A newline right after Max bytes of text still ends a whole line.
    Window = min(Size, Max + 1),
    case binary:match(Bin, <<"\n">>, [{scope, {0, Window}}]) of
        {Pos, 1} ->
            Len = Pos + 1,
            <<Line:Len/binary, Rest/binary>> = Bin,
            next(Rest, State, [Line | Acc]);
        nomatch when Size > Max ->
            <<Piece:Max/binary, Rest/binary>> = Bin,
            next(Rest, State, [Piece | Acc]);
        nomatch ->
            %% Copy, so that the partial line does not keep the whole
            %% chunk it came from alive.
            {lists:reverse(Acc), State#lines{partial = binary:copy(Bin)}}
    end.

next(<<>>, State, Acc) -> {lists:reverse(Acc), State};
next(Rest, State, Acc) -> split(Rest, State, Acc).
