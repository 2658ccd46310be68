-- pandoc filter for palisade.yaml(5): the reference's tables (key, type,
-- default, meaning) become definition lists, which read well at 80 columns
-- where a four-column tbl table wraps every cell.

local function inlines_of(cell)
  local out = pandoc.List()
  for _, block in ipairs(cell.contents) do
    if block.content then
      if #out > 0 then out:insert(pandoc.Space()) end
      out:extend(block.content)
    end
  end
  return out
end

function Table(tbl)
  local headers = {}
  if tbl.head and #tbl.head.rows > 0 then
    for i, cell in ipairs(tbl.head.rows[1].cells) do
      headers[i] = pandoc.utils.stringify(cell.contents)
    end
  end
  local items = pandoc.List()
  for _, body in ipairs(tbl.bodies) do
    for _, row in ipairs(body.body) do
      local cells = row.cells
      local term = inlines_of(cells[1])
      local blocks = pandoc.List()
      local n = #cells
      if n >= 3 then
        local facts = pandoc.List()
        for i = 2, n - 1 do
          if #facts > 0 then facts:extend({pandoc.Str(";"), pandoc.Space()}) end
          facts:extend({pandoc.Emph({pandoc.Str(headers[i] or "")}), pandoc.Str(":"), pandoc.Space()})
          facts:extend(inlines_of(cells[i]))
        end
        blocks:insert(pandoc.Para(facts))
      end
      if n >= 2 then blocks:insert(pandoc.Para(inlines_of(cells[n]))) end
      items:insert({term, {blocks}})
    end
  end
  return pandoc.DefinitionList(items)
end
